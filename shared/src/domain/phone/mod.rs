//! Phone numbers: parsed and validated per country with libphonenumber's metadata, never by
//! hand. A number is kept in E.164 with its country.
//!
//! The metadata is the `phonenumber` crate's (generated into `metadata.rs` by
//! `shared/tests/phone_metadata.rs`, which also checks it is current), and the rules are that
//! crate's parse and validation of an international number, step for step, so both answer
//! alike (the same test compares them over every example number and a million others). Why
//! not call the crate: it loads and syntax-checks every pattern of every region at start
//! (~0.1 s, before the first send) and matches through one mutex-guarded LRU of regexes; here
//! a region's patterns are compiled the first time a number of it is seen, once per process,
//! and matched without a lock.

#[rustfmt::skip] // generated, kept as the generator writes it
mod metadata;

use std::sync::{LazyLock, OnceLock};

use regex::{Regex, RegexBuilder};

use super::error::{Error, Result};
use metadata::{CODES, REGIONS};

/// A number that can exist: E.164 (`+` and digits) and the ISO 3166-1 alpha-2 code of the
/// country (or territory) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub e164: String,
    pub country: String,
}

/// libphonenumber's "region" of numbers that belong to no country (+800, +882, ...).
pub const NON_GEOGRAPHIC: &str = "001";

/// Parse `raw` as an international number, with or without its `+` (the seeds send
/// `919960639901`). `param` names the parameter in the 400 when it is not a number that can
/// exist in its country.
pub fn parse(raw: &str, param: &'static str) -> Result<Phone> {
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    // Only digits: libphonenumber also reads letters (vanity numbers) and punctuation, which
    // would make two spellings of one destination two destinations.
    if !(2..=17).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(param, "must be an E.164 phone number"));
    }
    international(digits).ok_or_else(|| Error::invalid(param, "is not a valid phone number for its country"))
}

/// One pattern of the metadata with the lengths it admits (empty: any).
pub(crate) struct Desc {
    pattern: &'static str,
    lengths: &'static [u16],
    local: &'static [u16],
}

/// One region's metadata: what parsing and validating an international number reads.
pub(crate) struct Region {
    /// The region's code as libphonenumber spells it (`001` for non-geographic numbers).
    id: &'static str,
    /// Whether `id` is a country the crate knows (it answers "no country" otherwise).
    known: bool,
    national_prefix: Option<&'static str>,
    national_prefix_for_parsing: Option<&'static str>,
    transform: Option<&'static str>,
    leading_digits: Option<&'static str>,
    general: Desc,
    /// Fixed line, mobile, toll free, premium rate, shared cost, VoIP, personal, pager, UAN,
    /// voicemail: a number is valid when the general pattern and one of these match.
    types: &'static [Desc],
}

/// A country calling code, its regions (main country first) and the one its non-geographic
/// numbers read (`by_code` order).
pub(crate) struct Code {
    code: u16,
    regions: &'static [u16],
    first: u16,
}

/// A region's patterns, each compiled the first time it is needed (a US number is decided by
/// its general and fixed-line patterns; telling the regions of one calling code apart reads
/// only their leading digits).
struct Compiled {
    general: OnceLock<Regex>,
    types: Box<[OnceLock<Regex>]>,
    leading_digits: OnceLock<Option<Regex>>,
    /// Unanchored, as the crate uses it (captures and replace).
    parsing: OnceLock<Option<Regex>>,
}

fn compile(source: &str, anchored: bool) -> Regex {
    // The crate's semantics: a pattern is searched (whitespace-insensitive) and counts only if
    // its leftmost match starts at 0, which is what `^` anchors; the metadata is checked by the
    // test, so a pattern that does not compile is a bug here.
    let source = if anchored { format!("^(?:{source})") } else { source.to_owned() };
    RegexBuilder::new(&source).ignore_whitespace(true).build().expect("libphonenumber pattern")
}

static COMPILED: LazyLock<Box<[Compiled]>> = LazyLock::new(|| {
    REGIONS
        .iter()
        .map(|r| Compiled {
            general: OnceLock::new(),
            types: r.types.iter().map(|_| OnceLock::new()).collect(),
            leading_digits: OnceLock::new(),
            parsing: OnceLock::new(),
        })
        .collect()
});

fn leading_digits(index: usize) -> Option<&'static Regex> {
    COMPILED[index].leading_digits.get_or_init(|| REGIONS[index].leading_digits.map(|p| compile(p, true))).as_ref()
}

fn parsing(index: usize) -> Option<&'static Regex> {
    COMPILED[index]
        .parsing
        .get_or_init(|| REGIONS[index].national_prefix_for_parsing.map(|p| compile(p, false)))
        .as_ref()
}

fn matches(desc: &Desc, re: &OnceLock<Regex>, value: &str) -> bool {
    (desc.lengths.is_empty() || desc.lengths.contains(&(value.len() as u16)))
        && re.get_or_init(|| compile(desc.pattern, true)).is_match(value)
}

fn general_matches(index: usize, value: &str) -> bool {
    matches(&REGIONS[index].general, &COMPILED[index].general, value)
}

/// The crate's `number_type(..) != Unknown`.
fn is_valid_in(index: usize, value: &str) -> bool {
    let (region, compiled) = (&REGIONS[index], &COMPILED[index]);
    general_matches(index, value) && region.types.iter().zip(&compiled.types).any(|(d, re)| matches(d, re, value))
}

fn code_entry(code: u16) -> Option<&'static Code> {
    CODES.binary_search_by_key(&code, |c| c.code).ok().map(|i| &CODES[i])
}

/// The region whose metadata reads `national` under `code` (the crate's `source_for`).
fn source_for(code: &Code, national: &str) -> Option<usize> {
    if let [only] = code.regions {
        // A code of one region is that region; non-geographic numbers (`001`, one region per
        // code) read the code's first metadata; a region the crate does not know, none.
        let only = *only as usize;
        return match REGIONS[only].id {
            NON_GEOGRAPHIC => Some(code.first as usize),
            _ => REGIONS[only].known.then_some(only),
        };
    }
    code.regions.iter().map(|&i| i as usize).find(|&i| match leading_digits(i) {
        Some(leading) => leading.is_match(national),
        None => is_valid_in(i, national),
    })
}

/// The crate's national-prefix handling of a number's national part (`helper::national_number`
/// and the plain prefix after it).
fn strip_national_prefix(index: usize, national: &str) -> String {
    let region = &REGIONS[index];
    let mut out = national.to_owned();
    match parsing(index) {
        Some(parsing) => {
            if let Some(found) = parsing.find(national).filter(|m| m.start() == 0) {
                let captures = parsing.captures(national).expect("found above");
                let first = captures.get(1);
                let last = captures.get(captures.len() - 1);
                match region.transform {
                    Some(rule) if last.is_some() => {
                        // Transformed only if that keeps a number the general pattern took.
                        let transformed = parsing.replace(national, rule).into_owned();
                        let viable = general_matches(index, national);
                        if (!viable || general_matches(index, &transformed)) && first.is_some() {
                            out = transformed;
                        }
                    }
                    // The crate re-checks the number from where the prefix starts, 0: so the
                    // prefix always goes.
                    _ => out = national[found.end()..].to_owned(),
                }
            }
        }
        // Without a parsing pattern the crate strips the plain prefix here and once more below.
        None => {
            if let Some(prefix) = region.national_prefix.filter(|p| out.starts_with(p)) {
                out.drain(..prefix.len());
            }
        }
    }
    if let Some(prefix) = region.national_prefix.filter(|p| out.starts_with(p)) {
        out.drain(..prefix.len());
    }
    out
}

/// Whether the crate's `length(.., Unknown)` would call `national` too short for the region.
fn too_short(index: usize, national: &str) -> bool {
    let general = &REGIONS[index].general;
    let len = national.len() as u16;
    general.lengths.first().is_some_and(|&min| !general.local.contains(&len) && len < min)
}

/// `digits` (no `+`) as the crate parses and validates `+{digits}`: the country calling code,
/// the national number after the region's national prefix, then the region's patterns.
fn international(digits: &str) -> Option<Phone> {
    if digits.len() <= 2 || digits.starts_with('0') {
        return None;
    }
    let code = (1..=3).find_map(|len| code_entry(digits[..len].parse().ok()?).map(|c| (c, len)));
    let (code, len) = code?;
    let mut national = digits[len..].to_owned();
    if let Some(index) = source_for(code, national.trim_start_matches('0')) {
        let potential = strip_national_prefix(index, &national);
        if !too_short(index, &potential) {
            national = potential;
        }
    }
    if !(2..=17).contains(&national.len()) {
        return None;
    }
    // The crate keeps the national number as a u64 under 2^56 plus its leading zeros (so
    // `unzeroed` is that u64 written out).
    let unzeroed = national.trim_start_matches('0');
    if unzeroed.parse::<u64>().ok()? >= 1 << 56 {
        return None;
    }
    let valid = source_for(code, &national).is_some_and(|index| is_valid_in(index, &national));
    if !valid {
        return None;
    }
    let country = source_for(code, unzeroed)
        .map(|index| &REGIONS[index])
        .filter(|region| region.known)
        .map_or(NON_GEOGRAPHIC, |region| region.id);
    Some(Phone { e164: format!("+{}{national}", code.code), country: country.to_owned() })
}

/// An ISO 3166-1 alpha-2 code as given in settings (`us` → `US`); 400 naming `param` otherwise.
pub fn country_code(raw: &str, param: &'static str) -> Result<String> {
    let upper = raw.trim().to_ascii_uppercase();
    if upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(upper)
    } else {
        Err(Error::invalid(param, "must list ISO 3166-1 alpha-2 country codes such as US, GB"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(n: &str) -> Option<String> {
        parse(n, "to").ok().map(|p| p.country)
    }

    #[test]
    fn valid_numbers_of_each_country_are_accepted_with_their_country() {
        for (n, cc) in [
            ("+14155550100", "US"),
            ("+12015550123", "US"),
            ("+447400123456", "GB"),
            ("+442079460000", "GB"),
            ("+919960639901", "IN"),
            ("+911123456789", "IN"),
            ("+4915123456789", "DE"),
            ("+493012345678", "DE"),
            ("+819012345678", "JP"),
            ("+81312345678", "JP"),
        ] {
            assert_eq!(country(n).as_deref(), Some(cc), "{n}");
        }
    }

    #[test]
    fn numbers_that_cannot_exist_in_their_country_are_refused_naming_the_parameter() {
        for n in [
            "+15551234567",     // US: no area code 555
            "+1415555",         // US: too short
            "+447700900123",    // GB: Ofcom's drama range, never assigned
            "+44123",           // GB: too short
            "+9112345",         // IN: too short
            "+910123456789",    // IN: no leading 0 after the country code
            "+491",             // DE: too short
            "+4900000000000",   // DE: no such range
            "+810312345678901", // JP: too long
            "+8100000000",      // JP: no such range
            "+0123456789",
            "ZZZZZZZZZZZ",
            "+1-415-555-0100",
            "",
        ] {
            let err = parse(n, "to").unwrap_err();
            assert!(matches!(&err, Error::InvalidParameter { param, .. } if param == "to"), "{n}: {err:?}");
        }
    }

    #[test]
    fn numbers_without_plus_are_read_as_international_and_stored_in_e164() {
        assert_eq!(parse("919960639901", "to").unwrap(), Phone { e164: "+919960639901".into(), country: "IN".into() });
        assert_eq!(parse("+14155550100", "to").unwrap().e164, "+14155550100");
    }

    #[test]
    fn country_codes_are_two_letters_in_upper_case() {
        assert_eq!(country_code("gb", "allowedCountries").unwrap(), "GB");
        assert!(country_code("GBR", "allowedCountries").is_err());
        assert!(country_code("1", "allowedCountries").is_err());
    }
}
