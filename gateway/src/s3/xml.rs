//! Writing S3's XML answers and reading the XML bodies clients send.

use crate::s3::error::S3Error;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::fmt::Write;

const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Builds one XML document; element text is escaped as it is added.
pub struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

impl XmlWriter {
    /// A document whose root element carries the S3 namespace.
    pub fn new(root: &'static str) -> XmlWriter {
        let mut out = String::with_capacity(1024);
        out.push_str(DECLARATION);
        let _ = write!(out, r#"<{root} xmlns="{NAMESPACE}">"#);
        XmlWriter {
            out,
            open: vec![root],
        }
    }

    /// A document without a namespace (S3's `<Error>`).
    pub fn bare(root: &'static str) -> XmlWriter {
        let mut out = String::from(DECLARATION);
        let _ = write!(out, "<{root}>");
        XmlWriter {
            out,
            open: vec![root],
        }
    }

    pub fn open(&mut self, name: &'static str) -> &mut Self {
        let _ = write!(self.out, "<{name}>");
        self.open.push(name);
        self
    }

    /// Opens an element with attributes (their values escaped).
    pub fn open_with(&mut self, name: &'static str, attributes: &[(&str, &str)]) -> &mut Self {
        let _ = write!(self.out, "<{name}");
        for (attribute, value) in attributes {
            let _ = write!(self.out, r#" {attribute}="{}""#, escape(value));
        }
        self.out.push('>');
        self.open.push(name);
        self
    }

    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            let _ = write!(self.out, "</{name}>");
        }
        self
    }

    pub fn elem(&mut self, name: &str, text: impl AsRef<str>) -> &mut Self {
        let _ = write!(self.out, "<{name}>{}</{name}>", escape(text.as_ref()));
        self
    }

    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Escapes text for XML, including the control characters XML 1.0 cannot carry literally.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n') => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// One `<Part>` of a CompleteMultipartUpload body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CompletePart {
    pub number: u32,
    /// Without quotes.
    pub etag: String,
    /// `ChecksumCRC32` and the like: (algorithm name, value).
    pub checksums: Vec<(String, String)>,
}

/// The parts list of a CompleteMultipartUpload body.
pub fn parse_complete_parts(body: &[u8]) -> Result<Vec<CompletePart>, S3Error> {
    let mut reader = Reader::from_reader(body);
    let mut parts = Vec::new();
    let mut current: (Option<u32>, Option<String>, Vec<(String, String)>) =
        (None, None, Vec::new());
    let mut field: Option<Vec<u8>> = None;
    let mut saw_root = false;
    loop {
        match reader.read_event().map_err(|_| S3Error::MalformedXml)? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_vec();
                if name == b"CompleteMultipartUpload" {
                    saw_root = true;
                } else if name == b"Part" {
                    current = (None, None, Vec::new());
                }
                field = Some(name);
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| S3Error::MalformedXml)?;
                match field.as_deref() {
                    Some(b"PartNumber") => {
                        current.0 = Some(text.trim().parse().map_err(|_| S3Error::MalformedXml)?)
                    }
                    Some(b"ETag") => current.1 = Some(text.trim().trim_matches('"').to_string()),
                    Some(name) if name.starts_with(b"Checksum") => {
                        let algorithm = String::from_utf8_lossy(&name[b"Checksum".len()..]);
                        current
                            .2
                            .push((algorithm.into_owned(), text.trim().to_string()));
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                if e.local_name().as_ref() == b"Part" {
                    match std::mem::take(&mut current) {
                        (Some(number), Some(etag), checksums) => parts.push(CompletePart {
                            number,
                            etag,
                            checksums,
                        }),
                        _ => return Err(S3Error::MalformedXml),
                    }
                }
                field = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || parts.is_empty() {
        return Err(S3Error::MalformedXml);
    }
    Ok(parts)
}

/// One element of a small XML document a client sent: its local name, text and children.
#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child of that name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child of that name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child of that name.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// The deepest nesting a client's document may have. S3's own bodies go about six levels deep;
/// without a bound, a body of a few hundred KB nested tens of thousands deep builds a tree whose
/// (recursive) drop overflows the thread's stack and aborts the process.
const MAX_DEPTH: usize = 32;

/// Parses a whole (small) document into its root element, which must be named `root`; anything
/// not well-formed, or nested deeper than `MAX_DEPTH`, is `MalformedXML`.
pub fn parse_tree(body: &[u8], root: &str) -> Result<Element, S3Error> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut done: Option<Element> = None;
    let name_of = |n: &[u8]| String::from_utf8(n.to_vec()).map_err(|_| S3Error::MalformedXml);
    loop {
        match reader.read_event().map_err(|_| S3Error::MalformedXml)? {
            Event::Start(_) if stack.len() >= MAX_DEPTH => return Err(S3Error::MalformedXml),
            Event::Start(e) if done.is_none() => stack.push(Element {
                name: name_of(e.local_name().as_ref())?,
                ..Element::default()
            }),
            Event::Empty(e) if done.is_none() => {
                let element = Element {
                    name: name_of(e.local_name().as_ref())?,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => done = Some(element),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| S3Error::MalformedXml)?;
                match stack.last_mut() {
                    Some(current) => current.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(S3Error::MalformedXml),
                }
            }
            Event::CData(t) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or(S3Error::MalformedXml)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => done = Some(element),
                }
            }
            Event::Eof => break,
            Event::Start(_) | Event::Empty(_) => return Err(S3Error::MalformedXml),
            _ => {}
        }
    }
    match done {
        Some(element) if stack.is_empty() && element.name == root => Ok(element),
        _ => Err(S3Error::MalformedXml),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        let deep = |n: usize| format!("<Delete>{}{}</Delete>", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse_tree(deep(MAX_DEPTH - 1).as_bytes(), "Delete").is_ok());
        assert!(matches!(
            parse_tree(deep(35_000).as_bytes(), "Delete"),
            Err(S3Error::MalformedXml)
        ));
    }

    #[test]
    fn writer_escapes_and_closes() {
        let mut w = XmlWriter::new("R");
        w.open("A").elem("K", "a<b&\"c\u{1}").close().elem("N", "1");
        let xml = w.finish();
        assert!(xml.ends_with("<A><K>a&lt;b&amp;&quot;c&#x1;</K></A><N>1</N></R>"));
    }

    #[test]
    fn trees_parse() {
        let tree = parse_tree(
            br#"<?xml version="1.0"?><Delete xmlns="x"><Quiet>true</Quiet>
            <Object><Key>a &amp; b</Key></Object><Object><Key>c</Key><VersionId/></Object></Delete>"#,
            "Delete",
        )
        .unwrap();
        assert_eq!(tree.text_of("Quiet"), Some("true"));
        let keys: Vec<_> = tree
            .all("Object")
            .filter_map(|o| o.text_of("Key"))
            .collect();
        assert_eq!(keys, ["a & b", "c"]);
        assert!(parse_tree(b"<Delete><Object></Delete>", "Delete").is_err());
        assert!(parse_tree(b"<Other/>", "Delete").is_err());
        assert!(parse_tree(b"<Delete/><Delete/>", "Delete").is_err());
        assert!(parse_tree(b"", "Delete").is_err());
    }

    #[test]
    fn complete_parts_parse() {
        let body = br#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <Part><ETag>"aa"</ETag><PartNumber>1</PartNumber></Part>
            <Part><PartNumber>2</PartNumber><ETag>bb</ETag><ChecksumCRC32>x</ChecksumCRC32></Part>
        </CompleteMultipartUpload>"#;
        assert_eq!(
            parse_complete_parts(body).unwrap(),
            vec![
                CompletePart {
                    number: 1,
                    etag: "aa".into(),
                    checksums: Vec::new()
                },
                CompletePart {
                    number: 2,
                    etag: "bb".into(),
                    checksums: vec![("CRC32".into(), "x".into())]
                }
            ]
        );
        assert!(parse_complete_parts(b"<CompleteMultipartUpload><Part>").is_err());
        assert!(parse_complete_parts(b"garbage").is_err());
        assert!(parse_complete_parts(b"<Other/>").is_err());
    }
}
