//! North American Numbering Plan rules for a US phone number's 10 digits, and its E.164 form.

use crate::auction::schema::normalize_phone;

/// Why 10 digits are not a dialable NANP number. No variant carries a digit of the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanpProblem {
    /// The area code starts with 0 or 1.
    AreaCodeStart,
    /// The area code is a service code (211, 311, … 911).
    AreaCodeN11,
    /// The area code is reserved and never assigned: N9X (kept for expansion), 37X, 96X.
    AreaCodeReserved,
    /// The exchange starts with 0 or 1.
    ExchangeStart,
    /// The exchange is a service code (211, 311, … 911).
    ExchangeN11,
    /// 555-0100 to 555-0199: reserved for fiction (films, examples).
    Fictional,
}

impl NanpProblem {
    /// The rule broken, as a phrase that follows the field name; never a digit of the value.
    pub fn phrase(self) -> &'static str {
        match self {
            NanpProblem::AreaCodeStart => "has an area code that cannot start with zero or one",
            NanpProblem::AreaCodeN11 => "has a service code (such as emergency) as its area code",
            NanpProblem::AreaCodeReserved => "has a reserved area code that is never assigned",
            NanpProblem::ExchangeStart => "has an exchange that cannot start with zero or one",
            NanpProblem::ExchangeN11 => "has a service code (such as emergency) as its exchange",
            NanpProblem::Fictional => "is in the range reserved for fictional numbers",
        }
    }
}

/// Checks 10 digits (area code, exchange, line) against the NANP: area code and exchange
/// NXX with N = 2–9, neither an N11 service code, the area code not reserved (N9X, 37X, 96X),
/// and not 555-0100 to 555-0199. `digits` must be 10 ASCII digits ([`normalize_phone`]'s).
pub fn nanp_problem(digits: &str) -> Option<NanpProblem> {
    let d = digits.as_bytes();
    debug_assert!(d.len() == 10 && d.iter().all(u8::is_ascii_digit));
    if d.len() != 10 {
        return Some(NanpProblem::AreaCodeStart);
    }
    let n11 = |x: &[u8]| x[1] == b'1' && x[2] == b'1';
    let (area, exchange, line) = (&d[0..3], &d[3..6], &d[6..10]);
    if area[0] < b'2' {
        return Some(NanpProblem::AreaCodeStart);
    }
    if n11(area) {
        return Some(NanpProblem::AreaCodeN11);
    }
    if area[1] == b'9' || area.starts_with(b"37") || area.starts_with(b"96") {
        return Some(NanpProblem::AreaCodeReserved);
    }
    if exchange[0] < b'2' {
        return Some(NanpProblem::ExchangeStart);
    }
    if n11(exchange) {
        return Some(NanpProblem::ExchangeN11);
    }
    if exchange == b"555" && line.starts_with(b"01") {
        return Some(NanpProblem::Fictional);
    }
    None
}

/// The E.164 form of a US phone number, `+1` and its 10 digits (`(214) 555-0123` →
/// `+12145550123`); `None` when the text does not normalize to 10 digits.
pub fn to_e164(phone: &str) -> Option<String> {
    normalize_phone(phone).map(|digits| format!("+1{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_numbers_pass() {
        for good in [
            "2125551234", // 555 outside 01xx
            "2145550200",
            "2145550099",
            "4155552671",
            "8002345678",
            "9492001234",
            "2022345678",
        ] {
            assert_eq!(nanp_problem(good), None, "{good}");
        }
    }

    #[test]
    fn each_rule_is_named() {
        use NanpProblem::*;
        for (bad, problem) in [
            ("0125551234", AreaCodeStart),
            ("1125551234", AreaCodeStart),
            ("2112345678", AreaCodeN11),
            ("9112345678", AreaCodeN11),
            ("4112345678", AreaCodeN11),
            ("2992345678", AreaCodeReserved),
            ("3702345678", AreaCodeReserved),
            ("9652345678", AreaCodeReserved),
            ("2140234567", ExchangeStart),
            ("2141234567", ExchangeStart),
            ("2149111234", ExchangeN11),
            ("2144111234", ExchangeN11),
            ("2145550100", Fictional),
            ("2145550123", Fictional),
            ("2145550199", Fictional),
        ] {
            assert_eq!(nanp_problem(bad), Some(problem), "{bad}");
        }
    }

    #[test]
    fn no_phrase_carries_a_digit() {
        use NanpProblem::*;
        for problem in [
            AreaCodeStart,
            AreaCodeN11,
            AreaCodeReserved,
            ExchangeStart,
            ExchangeN11,
            Fictional,
        ] {
            assert!(!problem.phrase().contains(|c: char| c.is_ascii_digit()));
        }
    }

    #[test]
    fn e164_forms() {
        assert_eq!(to_e164("(214) 555-0123").as_deref(), Some("+12145550123"));
        assert_eq!(to_e164("+1 214 555 0123").as_deref(), Some("+12145550123"));
        assert_eq!(to_e164("1-214-555-0123").as_deref(), Some("+12145550123"));
        assert_eq!(to_e164("214.555.0123").as_deref(), Some("+12145550123"));
        assert_eq!(to_e164("+44 20 7946 0958"), None);
        assert_eq!(to_e164("555-0123"), None);
    }

    proptest! {
        /// A number passes exactly when its area code and exchange are NXX, neither N11,
        /// the area code not reserved, and it is not 555-01xx.
        #[test]
        fn matches_the_rules_as_written(area in 0u32..1000, exchange in 0u32..1000, line in 0u32..10000) {
            let digits = format!("{area:03}{exchange:03}{line:04}");
            let n11 = |x: u32| x % 100 == 11;
            let reserved = (area / 10) % 10 == 9 || area / 10 == 37 || area / 10 == 96;
            let fictional = exchange == 555 && (100..200).contains(&line);
            let invalid = area < 200 || n11(area) || reserved
                || exchange < 200 || n11(exchange) || fictional;
            prop_assert_eq!(nanp_problem(&digits).is_some(), invalid);
            prop_assert_eq!(to_e164(&digits), Some(format!("+1{digits}")));
        }
    }
}
