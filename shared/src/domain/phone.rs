//! Phone numbers: parsed and validated per country with libphonenumber's metadata (the
//! `phonenumber` crate), never by hand. A number is kept in E.164 with its country.

use phonenumber::Mode;

use super::error::{Error, Result};

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
    let not_valid = || Error::invalid(param, "is not a valid phone number for its country");
    let number = phonenumber::parse(None, format!("+{digits}")).map_err(|_| not_valid())?;
    if !phonenumber::is_valid(&number) {
        return Err(not_valid());
    }
    let country = number.country().id().map_or_else(|| NON_GEOGRAPHIC.to_owned(), |id| id.as_ref().to_owned());
    Ok(Phone { e164: number.format().mode(Mode::E164).to_string(), country })
}

/// Load libphonenumber's metadata and compile its patterns once, at process start, rather than
/// in the first request.
pub fn warm_up() {
    let _ = parse("+14155550100", "to");
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
