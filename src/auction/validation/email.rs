//! Email rules: a strict practical syntax, and the disposable domains' list
//! (`data/disposable-email-domains.txt`, compiled in).

use std::collections::HashSet;
use std::sync::LazyLock;

/// The shipped list, one domain a line; `#` lines are comments.
const DISPOSABLE_DOMAINS: &str = include_str!("data/disposable-email-domains.txt");

static DISPOSABLE: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    DISPOSABLE_DOMAINS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// How many domains the shipped list holds.
pub fn disposable_domain_count() -> usize {
    DISPOSABLE.len()
}

/// Characters a local part may hold besides letters and digits (RFC 5322's atext, and `.`).
const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";

/// Why an address breaks the strict syntax. No variant carries a part of the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxProblem {
    /// Longer than 254 characters, or a local part over 64.
    TooLong,
    /// The local part holds a character outside letters, digits and ``!#$%&'*+/=?^_`{|}~-.``,
    /// or a dot at its start, its end or next to another.
    LocalPart,
    /// The domain is not dot-separated labels of letters, digits and inner hyphens, each 1–63
    /// characters, ending in a top-level domain of two or more letters (or `xn--…`).
    Domain,
}

impl SyntaxProblem {
    /// The rule broken, as a phrase that follows the field name.
    pub fn phrase(self) -> &'static str {
        match self {
            SyntaxProblem::TooLong => "is too long for an email address",
            SyntaxProblem::LocalPart => "has a part before the @ that is not a valid mailbox",
            SyntaxProblem::Domain => "has a domain that is not a valid host name",
        }
    }
}

/// Checks an address (already trimmed, with one `@`, as the `email` type requires) against a
/// sane practical syntax: not RFC 5322 in full (no quoted local parts, comments or address
/// literals, which no consumer form produces), but what mail providers hand out.
pub fn syntax_problem(address: &str) -> Option<SyntaxProblem> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Some(SyntaxProblem::LocalPart);
    };
    if address.len() > 254 || local.len() > 64 {
        return Some(SyntaxProblem::TooLong);
    }
    let local_ok = !local.is_empty()
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c));
    if !local_ok {
        return Some(SyntaxProblem::LocalPart);
    }
    if !is_host_name(domain) {
        return Some(SyntaxProblem::Domain);
    }
    None
}

/// Whether `domain` is a host name with at least two labels and an alphabetic (or IDNA
/// `xn--`) top-level domain.
fn is_host_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || domain.len() > 253 {
        return false;
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld = labels[labels.len() - 1];
    labels.iter().all(|label| label_ok(label))
        && (tld.starts_with("xn--")
            || (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())))
}

/// The domain of an address, lower-cased, without a trailing dot.
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.trim().rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Whether the address's domain, or a parent domain of it (`x.mailinator.com` for
/// `mailinator.com`), is on the disposable list.
pub fn is_disposable(address: &str) -> bool {
    let Some(domain) = domain_of(address) else {
        return false;
    };
    let mut rest = domain.as_str();
    loop {
        if DISPOSABLE.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) => rest = parent,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_list_is_loaded() {
        assert!(disposable_domain_count() > 5_000);
        assert!(DISPOSABLE.contains("mailinator.com"));
        for common in [
            "gmail.com",
            "yahoo.com",
            "outlook.com",
            "example.com",
            "com",
        ] {
            assert!(!DISPOSABLE.contains(common), "{common}");
        }
    }

    #[test]
    fn disposable_domains_and_their_subdomains() {
        assert!(is_disposable("ada@mailinator.com"));
        assert!(is_disposable("ada@MAILINATOR.COM"));
        assert!(is_disposable(" ada@yopmail.com "));
        assert!(is_disposable("ada@inbox.mailinator.com"));
        assert!(is_disposable("ada@a.b.guerrillamail.com"));
        assert!(is_disposable("ada@mailinator.com."));
        assert!(!is_disposable("ada@gmail.com"));
        assert!(!is_disposable("ada@gmailinator.example.com"));
        assert!(!is_disposable("ada@mailinator.com.example.org"));
        assert!(!is_disposable("ada@com"));
        assert!(!is_disposable("not an address"));
    }

    #[test]
    fn practical_syntax() {
        for good in [
            "ada@example.com",
            "a.b+tag@mail.example.co.uk",
            "o'brien@example.ie",
            "x_y-z@sub-domain.example.museum",
            "ada@xn--bcher-kva.example",
            "ADA@EXAMPLE.COM",
        ] {
            assert_eq!(syntax_problem(good), None, "{good}");
        }
        use SyntaxProblem::*;
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_all = format!("a@{}.com", "b".repeat(250));
        for (bad, problem) in [
            (".ada@example.com", LocalPart),
            ("ada.@example.com", LocalPart),
            ("a..da@example.com", LocalPart),
            ("a(da)@example.com", LocalPart),
            ("\"ada\"@example.com", LocalPart),
            ("adá@example.com", LocalPart),
            ("ada@example", Domain),
            ("ada@-example.com", Domain),
            ("ada@example-.com", Domain),
            ("ada@exa_mple.com", Domain),
            ("ada@example.c", Domain),
            ("ada@example.123", Domain),
            ("ada@example..com", Domain),
            ("ada@[192.0.2.1]", Domain),
            (long_local.as_str(), TooLong),
            (long_all.as_str(), TooLong),
        ] {
            assert_eq!(syntax_problem(bad), Some(problem), "{bad}");
        }
    }

    #[test]
    fn domains_are_read_lower_cased() {
        assert_eq!(
            domain_of(" Ada@Example.COM. ").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("ada@"), None);
        assert_eq!(domain_of("ada"), None);
    }
}
