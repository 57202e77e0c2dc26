//! SMS length as the carriers (and SNS) count it: GSM-7 when every character is in the GSM
//! 03.38 default alphabet or its extension table (an extension character takes two septets),
//! UCS-2 otherwise (UTF-16 code units). One segment holds 160 septets or 70 units; a longer
//! message is concatenated, and each part then loses its header's worth: 153 septets or 67 units.

use super::error::{Error, Result};

/// The longest SMS a send may be, in segments (each one is billed).
pub const MAX_SEGMENTS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GSM-7" => Some(Encoding::Gsm7),
            "UCS-2" => Some(Encoding::Ucs2),
            _ => None,
        }
    }
}

/// What one SMS text costs on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub segments: u32,
}

/// The GSM 03.38 default alphabet (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: an escape septet and the character's own (two septets each).
const GSM_EXTENSION: &str = "^{}\\[~]|€\u{000C}";

fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

pub fn measure(text: &str) -> Measure {
    let septets: Option<usize> = text.chars().map(gsm_septets).sum();
    let (encoding, units, single, part) = match septets {
        Some(n) => (Encoding::Gsm7, n, 160, 153),
        None => (Encoding::Ucs2, text.encode_utf16().count(), 70, 67),
    };
    let segments = if units <= single { 1 } else { units.div_ceil(part) };
    Measure { encoding, units, segments: segments as u32 }
}

/// The text of an SMS about to be sent, measured; more than `MAX_SEGMENTS` is a 400 naming
/// `body` (the template is the part the caller controls).
pub fn check(text: &str) -> Result<Measure> {
    let m = measure(text);
    if m.segments > MAX_SEGMENTS {
        return Err(Error::invalid(
            "body",
            format!(
                "the SMS would take {} segments ({} {} units); at most {MAX_SEGMENTS}",
                m.segments,
                m.units,
                m.encoding.as_str()
            ),
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_fits_160_septets_in_one_segment_then_153_per_part() {
        assert_eq!(measure(&"a".repeat(160)), Measure { encoding: Encoding::Gsm7, units: 160, segments: 1 });
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
    }

    #[test]
    fn ucs2_fits_70_units_in_one_segment_then_67_per_part() {
        assert_eq!(measure(&"ж".repeat(70)), Measure { encoding: Encoding::Ucs2, units: 70, segments: 1 });
        assert_eq!(measure(&"ж".repeat(71)).segments, 2);
        assert_eq!(measure(&"ж".repeat(134)).segments, 2);
        assert_eq!(measure(&"ж".repeat(135)).segments, 3);
    }

    #[test]
    fn an_extension_character_counts_two_septets() {
        assert_eq!(measure("€").units, 2);
        assert_eq!(measure(&("a".repeat(158) + "[")).segments, 1);
        assert_eq!(measure(&("a".repeat(159) + "[")).segments, 2);
        assert_eq!(measure("{code} ~ | ^").encoding, Encoding::Gsm7);
    }

    #[test]
    fn one_character_outside_gsm_makes_the_whole_text_ucs2() {
        let m = measure("Your code is 123456 😀");
        assert_eq!(m.encoding, Encoding::Ucs2);
        // The emoji is a surrogate pair: two UTF-16 units.
        assert_eq!(m.units, 22);
        assert_eq!(measure("Code: 123456 日本").encoding, Encoding::Ucs2);
        assert_eq!(measure("Grüße, Ñoño à è ù").encoding, Encoding::Gsm7, "these accents are in GSM-7");
    }

    #[test]
    fn more_than_ten_segments_is_a_400_naming_body() {
        assert!(check(&"a".repeat(1530)).is_ok());
        let err = check(&"a".repeat(1531)).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { ref param, .. } if param == "body"), "{err:?}");
    }
}
