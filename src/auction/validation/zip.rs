//! ZIP code and state consistency, by the ZIP's 3-digit prefix (`data/zip3-states.tsv`,
//! compiled in).

use std::sync::LazyLock;

/// The shipped table: `prefix<TAB>STATE[,STATE…]` a line; `#` lines are comments.
const ZIP3_STATES: &str = include_str!("data/zip3-states.tsv");

/// The states of each 3-digit prefix, indexed by the prefix's value (0–999); empty: unused.
static BY_PREFIX: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
    let mut table = vec![Vec::new(); 1000];
    for line in ZIP3_STATES.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (prefix, states) = line
            .split_once('\t')
            .expect("zip3-states.tsv: a line is prefix<TAB>states");
        let prefix: usize = prefix
            .parse()
            .expect("zip3-states.tsv: a prefix is 3 digits");
        table[prefix] = states.split(',').collect();
    }
    table
});

/// Why a ZIP and a state do not go together. No variant carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZipProblem {
    /// Not 5 digits (or ZIP+4, `12345-6789`).
    Format,
    /// No ZIP code starts with these three digits.
    UnknownPrefix,
    /// The ZIP is in another state.
    StateMismatch,
}

/// The 3-digit prefix of a US ZIP written as `12345` or `12345-6789` (spaces around it
/// ignored); `None` otherwise.
pub fn zip_prefix(zip: &str) -> Option<usize> {
    let zip = zip.trim();
    let five = match zip.split_once('-') {
        Some((five, four)) if four.len() == 4 && four.bytes().all(|b| b.is_ascii_digit()) => five,
        Some(_) => return None,
        None => zip,
    };
    if five.len() != 5 || !five.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    five[..3].parse().ok()
}

/// Whether `zip` is a US ZIP code with a prefix in use.
pub fn zip_problem(zip: &str) -> Option<ZipProblem> {
    let Some(prefix) = zip_prefix(zip) else {
        return Some(ZipProblem::Format);
    };
    BY_PREFIX[prefix]
        .is_empty()
        .then_some(ZipProblem::UnknownPrefix)
}

/// Whether `zip` can be in `state` (a USPS two-letter code, any case, spaces around it
/// ignored): the ZIP's own problem first, then whether its prefix belongs to the state.
pub fn zip_state_problem(zip: &str, state: &str) -> Option<ZipProblem> {
    if let Some(problem) = zip_problem(zip) {
        return Some(problem);
    }
    let prefix = zip_prefix(zip)?;
    let state = state.trim();
    (!BY_PREFIX[prefix]
        .iter()
        .any(|known| known.eq_ignore_ascii_case(state)))
    .then_some(ZipProblem::StateMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_is_loaded() {
        let used = BY_PREFIX.iter().filter(|states| !states.is_empty()).count();
        assert!(used > 900, "{used}");
        let mut states: Vec<&str> = BY_PREFIX.iter().flatten().copied().collect();
        states.sort_unstable();
        states.dedup();
        for state in ["TX", "CA", "NY", "DC", "PR", "AK", "HI", "AE"] {
            assert!(states.contains(&state), "{state}");
        }
        assert!(states.iter().all(|s| s.len() == 2));
    }

    #[test]
    fn zips_and_their_states() {
        for (zip, state) in [
            ("75001", "TX"),
            ("75001", "tx"),
            (" 75001-1234 ", " TX "),
            ("10001", "NY"),
            ("90210", "CA"),
            ("00601", "PR"),
            ("02134", "MA"),
            ("99501", "AK"),
            ("20500", "DC"),
            ("06390", "NY"), // prefix 063 is Connecticut's and one New York island's
            ("06390", "CT"),
        ] {
            assert_eq!(zip_state_problem(zip, state), None, "{zip} {state}");
        }
        use ZipProblem::*;
        for (zip, state, problem) in [
            ("75001", "CA", StateMismatch),
            ("90210", "TX", StateMismatch),
            ("75001", "Texas", StateMismatch),
            ("75001", "", StateMismatch),
            ("7500", "TX", Format),
            ("750011", "TX", Format),
            ("75001-12", "TX", Format),
            ("7500A", "TX", Format),
            ("", "TX", Format),
            ("00001", "TX", UnknownPrefix),
            ("21301", "MD", UnknownPrefix),
            ("99901", "WA", StateMismatch),
        ] {
            assert_eq!(
                zip_state_problem(zip, state),
                Some(problem),
                "{zip} {state}"
            );
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(zip_prefix("75001"), Some(750));
        assert_eq!(zip_prefix("00501-0001"), Some(5));
        assert_eq!(zip_prefix("75 001"), None);
        assert_eq!(zip_problem("75001"), None);
        assert_eq!(zip_problem("abcde"), Some(ZipProblem::Format));
    }
}
