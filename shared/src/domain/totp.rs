//! TOTP (RFC 6238) over HOTP (RFC 4226): codes, their comparison, and the `otpauth://` URI
//! authenticator apps read. Plain functions of the seed and the time.

use hmac::{Hmac, Mac};

use super::{
    crypto::ct_eq,
    factor::{TotpAlgorithm, TotpParams},
    time::Millis,
};

/// Time steps either side of now whose codes are still accepted (a clock a step off, or a code
/// typed as its step ends).
pub const WINDOW: i64 = 1;

/// The time step `now_ms` falls in.
pub fn step_at(params: &TotpParams, now_ms: Millis) -> i64 {
    now_ms.div_euclid(1000 * i64::from(params.period_secs.max(1)))
}

/// The code of time step `step`, zero-padded to `params.digits`.
pub fn code(seed: &[u8], params: &TotpParams, step: i64) -> String {
    let counter = (step.max(0) as u64).to_be_bytes();
    let mac: Vec<u8> = match params.algorithm {
        TotpAlgorithm::Sha1 => {
            let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(seed).expect("HMAC takes any key length");
            m.update(&counter);
            m.finalize().into_bytes().to_vec()
        }
        TotpAlgorithm::Sha256 => {
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(seed).expect("HMAC takes any key length");
            m.update(&counter);
            m.finalize().into_bytes().to_vec()
        }
    };
    // Dynamic truncation (RFC 4226 §5.3).
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    let digits = u32::from(params.digits.clamp(6, 8));
    format!("{:0width$}", bin % 10u32.pow(digits), width = digits as usize)
}

/// The step within `WINDOW` of `now_ms` whose code `presented` is, if any. Every step of the
/// window is computed and compared in constant time, whichever matches (a timing tells nothing
/// of which step, or whether any, matched).
pub fn matching_step(seed: &[u8], params: &TotpParams, presented: &str, now_ms: Millis) -> Option<i64> {
    let now = step_at(params, now_ms);
    let mut found = None;
    for step in now - WINDOW..=now + WINDOW {
        let expected = code(seed, params, step);
        if ct_eq(expected.as_bytes(), presented.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The Key Uri Format of Google Authenticator (also read by 1Password, Authy and the rest):
/// `otpauth://totp/ISSUER:LABEL?secret=…&issuer=…&algorithm=…&digits=…&period=…`.
pub fn otpauth_uri(issuer: &str, label: &str, secret_b32: &str, params: &TotpParams) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm={}&digits={}&period={}",
        enc(issuer),
        enc(label),
        enc(issuer),
        params.algorithm.as_str(),
        params.digits,
        params.period_secs,
    )
}

/// `uri` as a QR code, an SVG document (black on white, a quiet zone around it).
pub fn qr_svg(uri: &str) -> Option<String> {
    let qr = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        qr.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(algorithm: TotpAlgorithm) -> TotpParams {
        TotpParams { algorithm, digits: 8, period_secs: 30 }
    }

    /// RFC 6238 Appendix B: the seeds are ASCII digits, 20 bytes for SHA-1 and 32 for SHA-256.
    #[test]
    fn rfc_6238_appendix_b_test_vectors() {
        let sha1_seed = b"12345678901234567890";
        let sha256_seed = b"12345678901234567890123456789012";
        let vectors: [(i64, &str, &str); 6] = [
            (59, "94287082", "46119246"),
            (1_111_111_109, "07081804", "68084774"),
            (1_111_111_111, "14050471", "67062674"),
            (1_234_567_890, "89005924", "91819424"),
            (2_000_000_000, "69279037", "90698825"),
            (20_000_000_000, "65353130", "77737706"),
        ];
        for (secs, sha1, sha256) in vectors {
            let p1 = params(TotpAlgorithm::Sha1);
            let p256 = params(TotpAlgorithm::Sha256);
            assert_eq!(code(sha1_seed, &p1, step_at(&p1, secs * 1000)), sha1, "SHA1 at {secs}");
            assert_eq!(code(sha256_seed, &p256, step_at(&p256, secs * 1000)), sha256, "SHA256 at {secs}");
        }
    }

    #[test]
    fn six_digit_codes_are_the_last_six_of_the_eight() {
        let p = TotpParams { digits: 6, ..params(TotpAlgorithm::Sha1) };
        assert_eq!(code(b"12345678901234567890", &p, step_at(&p, 59_000)), "287082");
    }

    #[test]
    fn the_window_takes_one_step_either_side_and_no_more() {
        let p = TotpParams::default();
        let seed = b"12345678901234567890";
        let now = 1_000_000 * 30_000 + 15_000;
        let step = step_at(&p, now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let c = code(seed, &p, step + offset);
            assert_eq!(matching_step(seed, &p, &c, now), accepted.then_some(step + offset), "offset {offset}");
        }
        assert_eq!(matching_step(seed, &p, "12345", now), None, "a code of another length");
    }

    #[test]
    fn base32_is_rfc_4648_without_padding() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn the_uri_names_issuer_label_and_parameters_encoded() {
        let uri = otpauth_uri("Acme Inc", "user@example.com", "ABC", &TotpParams::default());
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Inc:user%40example.com?secret=ABC&issuer=Acme%20Inc&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{}", &svg[..60]);
    }
}
