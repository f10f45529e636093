//! Simple XML element paths, the `path` of a response rule when the answer is XML:
//! `/response/bid/amount` (from the root element), `/response/@status` (an attribute),
//! `/response/item[2]` (the n-th of repeated elements, from 1; the first without an index).
//! Namespace prefixes are ignored, in the path and in the answer: `/soap:Envelope/soap:Body`
//! finds `<s:Envelope><s:Body>` whatever namespaces they are bound to.
//!
//! The answer is parsed by roxmltree: a read-only tree built in one pass over the (at most
//! 64 KiB) answer, which refuses DTDs (no entity expansion) and bounds its node count.

use std::borrow::Cow;

use roxmltree::{Document, Node, ParsingOptions};

/// Most nodes an answer may have (a 64 KiB answer has fewer than this anyway).
const MAX_NODES: u32 = 100_000;

/// An XML answer's bytes as UTF-8: as they are when they are UTF-8, else read as ISO-8859-1
/// (the usual other encoding of XML answers; each byte is its own character).
pub fn decode(body: &[u8]) -> Cow<'_, [u8]> {
    if std::str::from_utf8(body).is_ok() {
        return Cow::Borrowed(body);
    }
    let text: String = body.iter().map(|&b| char::from(b)).collect();
    Cow::Owned(text.into_bytes())
}

/// Parses an answer as XML (UTF-8: see [`decode`]; no DTD).
pub fn parse(body: &[u8]) -> Option<Document<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).ok()
}

/// A compiled element path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    /// From the root element down; the root's step has index 0.
    steps: Vec<Step>,
    /// The attribute of the last element, by local name.
    attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// The local name (any prefix dropped).
    name: String,
    /// 0-based position among the siblings of that name.
    index: usize,
}

impl XmlPath {
    /// Compiles `/a/b[2]/@c`; the error says what is wrong, without quoting the path.
    pub fn compile(path: &str) -> Result<XmlPath, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err("must be an element path from the root, such as /response/status".into());
        };
        let mut steps = Vec::new();
        let mut attribute = None;
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if attribute.is_some() {
                return Err("an attribute (@name) can only end a path".into());
            }
            if let Some(name) = part.strip_prefix('@') {
                if i == 0 {
                    return Err("must start with the root element's name".into());
                }
                attribute = Some(local_name(name)?.to_owned());
                continue;
            }
            let (name, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
                Some((name, index)) => match index.parse::<usize>() {
                    Ok(n) if n >= 1 => (name, n - 1),
                    _ => return Err("an index is a number from 1, as in item[2]".into()),
                },
                None => (*part, 0),
            };
            if i == 0 && index > 0 {
                return Err("the root element has no index".into());
            }
            steps.push(Step {
                name: local_name(name)?.to_owned(),
                index,
            });
        }
        Ok(XmlPath { steps, attribute })
    }

    /// The text at this path in `doc`: an attribute's value, or an element's own text (its
    /// text and CDATA children, joined, without surrounding white space). `None` when absent.
    pub fn find<'d>(&self, doc: &'d Document<'_>) -> Option<Cow<'d, str>> {
        let mut node = doc.root_element();
        let (root, below) = self.steps.split_first()?;
        if node.tag_name().name() != root.name {
            return None;
        }
        for step in below {
            node = node
                .children()
                .filter(|child| child.is_element() && child.tag_name().name() == step.name)
                .nth(step.index)?;
        }
        match &self.attribute {
            Some(name) => node
                .attributes()
                .find(|attribute| attribute.name() == name)
                .map(|attribute| Cow::Borrowed(attribute.value())),
            None => Some(own_text(node)),
        }
    }
}

/// The local part of `prefix:name`, checked.
fn local_name(name: &str) -> Result<&str, String> {
    let local = name.rsplit_once(':').map_or(name, |(_, local)| local);
    let valid = !local.is_empty()
        && !local.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !"/[]@:=\"'<>&*()|,".contains(c));
    if valid {
        Ok(local)
    } else {
        Err(
            "each step must be an element name (optionally name[n]), the last may be @attribute"
                .into(),
        )
    }
}

/// An element's own text, trimmed: borrowed when it is one text node.
fn own_text<'d>(node: Node<'d, '_>) -> Cow<'d, str> {
    let mut texts = node
        .children()
        .filter(Node::is_text)
        .filter_map(|t| t.text());
    let Some(first) = texts.next() else {
        return Cow::Borrowed("");
    };
    match texts.next() {
        None => Cow::Borrowed(first.trim()),
        Some(second) => {
            let mut joined = String::from(first);
            joined.push_str(second);
            texts.for_each(|t| joined.push_str(t));
            Cow::Owned(joined.trim().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(path: &str, xml: &str) -> Option<String> {
        let doc = parse(xml.as_bytes()).expect("valid XML");
        XmlPath::compile(path)
            .unwrap()
            .find(&doc)
            .map(Cow::into_owned)
    }

    #[test]
    fn elements_attributes_and_repeats_are_found() {
        let xml = r#"<?xml version="1.0"?>
            <response status="ok">
              <bid><amount> 38.505 </amount><id>r-1</id></bid>
              <item>a</item><item>b</item><item code="3">c</item>
            </response>"#;
        assert_eq!(find("/response/bid/amount", xml).as_deref(), Some("38.505"));
        assert_eq!(find("/response/@status", xml).as_deref(), Some("ok"));
        assert_eq!(find("/response/item", xml).as_deref(), Some("a"));
        assert_eq!(find("/response/item[1]", xml).as_deref(), Some("a"));
        assert_eq!(find("/response/item[3]", xml).as_deref(), Some("c"));
        assert_eq!(find("/response/item[3]/@code", xml).as_deref(), Some("3"));
        assert_eq!(find("/response/item[4]", xml), None);
        assert_eq!(find("/response/missing", xml), None);
        assert_eq!(find("/response/@missing", xml), None);
        assert_eq!(find("/other/bid", xml), None);
        assert_eq!(find("/response", xml).as_deref(), Some(""));
    }

    #[test]
    fn namespace_prefixes_are_ignored_on_both_sides() {
        let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:r="urn:buyer">
              <s:Body><r:Result r:code="7"><r:Status>Accepted</r:Status></r:Result></s:Body>
            </s:Envelope>"#;
        assert_eq!(
            find("/soap:Envelope/soap:Body/Result/Status", xml).as_deref(),
            Some("Accepted")
        );
        assert_eq!(
            find("/Envelope/Body/x:Result/@code", xml).as_deref(),
            Some("7")
        );
    }

    #[test]
    fn text_entities_and_cdata_are_read_as_text() {
        let xml = "<r><m>Out &amp; about <![CDATA[<here>]]></m></r>";
        assert_eq!(find("/r/m", xml).as_deref(), Some("Out & about <here>"));
    }

    #[test]
    fn bad_paths_are_refused() {
        for path in [
            "response/status",
            "/",
            "/a//b",
            "/a/b[0]",
            "/a/b[x]",
            "/a[2]/b",
            "/a/@b/c",
            "/@a",
            "/a/*",
            "/a/b c",
        ] {
            assert!(XmlPath::compile(path).is_err(), "{path}");
        }
    }

    #[test]
    fn answers_not_in_utf8_are_read_as_latin_1() {
        let body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r><m>D\xe9j\xe0 vendu</m></r>";
        let decoded = decode(body);
        let doc = parse(&decoded).unwrap();
        let path = XmlPath::compile("/r/m").unwrap();
        assert_eq!(path.find(&doc).as_deref(), Some("D\u{e9}j\u{e0} vendu"));
        assert!(matches!(decode(b"<r/>"), Cow::Borrowed(_)));
    }

    #[test]
    fn documents_with_a_dtd_or_not_xml_are_unreadable() {
        assert!(parse(b"<!DOCTYPE r [<!ENTITY a \"aaaa\">]><r>&a;</r>").is_none());
        assert!(parse(b"{\"status\":\"ok\"}").is_none());
        assert!(parse(b"<r><unclosed></r>").is_none());
        assert!(parse(&[0xff, 0xfe, b'<']).is_none());
    }
}
