//! GetObjectAttributes (`GET /bucket/key?attributes`): what HeadObject and ListParts tell of one
//! version, in one XML answer, limited to the attributes `x-amz-object-attributes` names. Of an
//! object under SSE-C, only for a request that gives its key, as HeadObject.

use crate::api::encryption::{self, SSE_C};
use crate::api::multipart::MAX_LISTED;
use crate::api::{Gateway, S3Request};
use crate::ops::lookup::{find_version, version_id};
use crate::s3::checksum::ChecksumType;
use crate::s3::error::S3Error;
use crate::s3::http::number;
use crate::s3::response::{xml_response, S3Response};
use crate::s3::xml::XmlWriter;
use http::request::Parts;
use http::HeaderValue;
use node_rpc::record::{ObjectRecord, PartData, StoredChecksum};
use std::time::{Duration, UNIX_EPOCH};

/// What `x-amz-object-attributes` may name, in the order S3 answers them whatever the order asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribute {
    ETag,
    Checksum,
    ObjectParts,
    StorageClass,
    ObjectSize,
}

impl Attribute {
    const ALL: [Attribute; 5] = [
        Attribute::ETag,
        Attribute::Checksum,
        Attribute::ObjectParts,
        Attribute::StorageClass,
        Attribute::ObjectSize,
    ];

    fn name(self) -> &'static str {
        match self {
            Attribute::ETag => "ETag",
            Attribute::Checksum => "Checksum",
            Attribute::ObjectParts => "ObjectParts",
            Attribute::StorageClass => "StorageClass",
            Attribute::ObjectSize => "ObjectSize",
        }
    }
}

/// The attributes asked for, from every `x-amz-object-attributes` header (each a comma-separated
/// list, as the SDKs send it).
fn requested(parts: &Parts) -> Result<Vec<Attribute>, S3Error> {
    let mut asked = Vec::new();
    for value in parts.headers.get_all("x-amz-object-attributes") {
        let value = value.to_str().map_err(|_| unknown_attribute())?;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let attribute = Attribute::ALL
                .into_iter()
                .find(|a| a.name() == name)
                .ok_or_else(unknown_attribute)?;
            asked.push(attribute);
        }
    }
    if asked.is_empty() {
        return Err(S3Error::InvalidRequest(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty".into(),
        ));
    }
    Ok(asked)
}

fn unknown_attribute() -> S3Error {
    S3Error::InvalidArgument("Invalid attribute name specified.".into())
}

/// Which of a multipart object's parts to list: `x-amz-max-parts` after `x-amz-part-number-marker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PartsPage {
    max_parts: usize,
    marker: u32,
}

impl PartsPage {
    fn of(req: &S3Request) -> Result<PartsPage, S3Error> {
        let max_parts: usize =
            number("x-amz-max-parts", req.header("x-amz-max-parts"), MAX_LISTED)?;
        Ok(PartsPage {
            max_parts: max_parts.min(MAX_LISTED),
            marker: number(
                "x-amz-part-number-marker",
                req.header("x-amz-part-number-marker"),
                0,
            )?,
        })
    }
}

pub async fn get_object_attributes(
    gw: &Gateway,
    bucket: &str,
    key: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    let asked = requested(&req.parts)?;
    let page = PartsPage::of(&req)?;
    let which = req.version_param()?;
    let bucket = gw.cluster.bucket(bucket).await?;
    // A delete marker is answered as GetObject answers it: 404 when current, 405 by version id,
    // each with `x-amz-delete-marker`.
    let found = find_version(&gw.cluster, &bucket, key, which, false).await?;
    let record = &found.record;
    // Its checksums and ETag are of the plaintext: not for a reader without the key.
    encryption::for_object(gw, &req, record, SSE_C)?;
    let mut response = xml_response(attributes_xml(record, &asked, page));
    let modified = UNIX_EPOCH + Duration::from_micros(record.last_modified().micros);
    let headers = response.headers_mut();
    headers.insert(
        http::header::LAST_MODIFIED,
        HeaderValue::from_str(&httpdate::fmt_http_date(modified))
            .expect("an HTTP date is a valid header value"),
    );
    if let Some(id) = version_id(&bucket, record.version_ref()) {
        headers.insert(
            "x-amz-version-id",
            HeaderValue::from_str(&id).expect("a version id is a valid header value"),
        );
    }
    Ok(response)
}

/// The answer's document: each attribute asked for that the version has.
fn attributes_xml(record: &ObjectRecord, asked: &[Attribute], page: PartsPage) -> XmlWriter {
    let mut xml = XmlWriter::new("GetObjectAttributesResponse");
    for attribute in Attribute::ALL.into_iter().filter(|a| asked.contains(a)) {
        match attribute {
            // Unlike HEAD's header, this ETag is not quoted (as S3 answers it).
            Attribute::ETag => {
                xml.elem("ETag", &record.etag);
            }
            Attribute::Checksum => {
                if let Some(checksum) = &record.checksum {
                    checksum_xml(&mut xml, checksum);
                }
            }
            Attribute::ObjectParts => {
                if is_multipart(record) {
                    parts_xml(&mut xml, &record.parts, page);
                }
            }
            Attribute::StorageClass => {
                xml.elem("StorageClass", "STANDARD");
            }
            Attribute::ObjectSize => {
                xml.elem("ObjectSize", record.size.to_string());
            }
        }
    }
    xml
}

/// A multipart object's ETag is `<MD5 of its parts' MD5s>-<parts>` (a copy of one is a simple
/// object again): S3 shows ObjectParts only for such objects.
fn is_multipart(record: &ObjectRecord) -> bool {
    record.etag.contains('-')
}

fn checksum_xml(xml: &mut XmlWriter, checksum: &StoredChecksum) {
    // HEAD shows a composite checksum as `<base64>-<parts>`; this answer shows the checksum
    // alone, the parts being counted in ObjectParts.
    let value = match checksum.value.split_once('-') {
        Some((value, _)) if checksum.composite => value,
        _ => &checksum.value,
    };
    xml.open("Checksum")
        .elem(&format!("Checksum{}", checksum.algorithm), value)
        .elem("ChecksumType", ChecksumType::of(checksum).name())
        .close();
}

/// ObjectParts: the count and the page of parts asked for. As S3 does for buckets that are not
/// directory buckets, the parts themselves are listed only when they have checksums.
fn parts_xml(xml: &mut XmlWriter, parts: &[PartData], page: PartsPage) {
    let mut after = parts.iter().filter(|p| p.number > page.marker);
    let listed: Vec<&PartData> = after.by_ref().take(page.max_parts).collect();
    let truncated = after.next().is_some();
    xml.open("ObjectParts")
        .elem("PartsCount", parts.len().to_string())
        .elem("PartNumberMarker", page.marker.to_string());
    if let Some(last) = listed.last() {
        xml.elem("NextPartNumberMarker", last.number.to_string());
    }
    xml.elem("MaxParts", page.max_parts.to_string())
        .elem("IsTruncated", truncated.to_string());
    if parts.iter().any(|p| p.checksum.is_some()) {
        for part in listed {
            xml.open("Part")
                .elem("PartNumber", part.number.to_string())
                .elem("Size", part.size.to_string());
            if let Some(c) = &part.checksum {
                xml.elem(&format!("Checksum{}", c.algorithm), &c.value);
            }
            xml.close();
        }
    }
    xml.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_rpc::record::Version;

    fn request(headers: &[&str]) -> Parts {
        let mut builder = http::Request::get("/b/k?attributes");
        for value in headers {
            builder = builder.header("x-amz-object-attributes", *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn attributes_are_read_from_every_header_and_list() {
        let asked = requested(&request(&["ObjectSize, ETag", "Checksum"])).unwrap();
        assert_eq!(
            asked,
            [Attribute::ObjectSize, Attribute::ETag, Attribute::Checksum]
        );
        assert!(matches!(
            requested(&request(&["ETag,Size"])),
            Err(S3Error::InvalidArgument(_))
        ));
        assert!(matches!(
            requested(&request(&["etag"])),
            Err(S3Error::InvalidArgument(_))
        ));
        assert!(matches!(
            requested(&request(&[])),
            Err(S3Error::InvalidRequest(_))
        ));
        assert!(matches!(
            requested(&request(&[" , "])),
            Err(S3Error::InvalidRequest(_))
        ));
    }

    fn part(number: u32, checksum: Option<&str>) -> PartData {
        PartData {
            number,
            size: 5 << 20,
            md5: String::new(),
            block_size: 0,
            fragment_id: String::new(),
            inline: None,
            checksum: checksum.map(|value| StoredChecksum {
                algorithm: "CRC32".into(),
                value: value.into(),
                composite: false,
            }),
            key: None,
            frames: Default::default(),
        }
    }

    fn multipart(parts: Vec<PartData>, checksum: Option<StoredChecksum>) -> ObjectRecord {
        ObjectRecord {
            deleted: false,
            size: parts.iter().map(|p| p.size).sum(),
            etag: format!("0123-{}", parts.len()),
            parts,
            checksum,
            ..ObjectRecord::tombstone(Version::default(), false)
        }
    }

    fn xml(record: &ObjectRecord, asked: &[Attribute], max_parts: usize, marker: u32) -> String {
        attributes_xml(record, asked, PartsPage { max_parts, marker }).finish()
    }

    #[test]
    fn parts_page_after_the_marker() {
        let record = multipart(
            vec![
                part(1, Some("AAAAAA==")),
                part(3, Some("AQAAAA==")),
                part(4, Some("AgAAAA==")),
            ],
            None,
        );
        let page = xml(&record, &[Attribute::ObjectParts], 1, 1);
        assert!(page.contains(
            "<ObjectParts><PartsCount>3</PartsCount><PartNumberMarker>1</PartNumberMarker>\
             <NextPartNumberMarker>3</NextPartNumberMarker><MaxParts>1</MaxParts>\
             <IsTruncated>true</IsTruncated><Part><PartNumber>3</PartNumber>\
             <Size>5242880</Size><ChecksumCRC32>AQAAAA==</ChecksumCRC32></Part></ObjectParts>"
        ));
        let last = xml(&record, &[Attribute::ObjectParts], 1000, 3);
        assert!(last.contains("<IsTruncated>false</IsTruncated><Part><PartNumber>4</PartNumber>"));
    }

    #[test]
    fn parts_without_checksums_are_counted_not_listed() {
        let record = multipart(vec![part(1, None), part(2, None)], None);
        let answer = xml(&record, &[Attribute::ObjectParts], 1000, 0);
        assert!(answer.contains("<PartsCount>2</PartsCount>"));
        assert!(!answer.contains("<Part>"));
    }

    #[test]
    fn a_simple_object_has_no_object_parts() {
        let record = ObjectRecord {
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            ..multipart(vec![part(1, None)], None)
        };
        let answer = xml(&record, &Attribute::ALL, 1000, 0);
        assert!(!answer.contains("ObjectParts"));
        assert!(answer.contains("<ETag>d41d8cd98f00b204e9800998ecf8427e</ETag>"));
    }

    #[test]
    fn a_composite_checksum_loses_its_part_count() {
        let composite = StoredChecksum {
            algorithm: "SHA256".into(),
            value: "rVWtNbadtsaKXJAcgWPWjifHzJaXde/iV4jaJAOdivc=-3".into(),
            composite: true,
        };
        let record = multipart(vec![part(1, None)], Some(composite));
        assert!(xml(&record, &[Attribute::Checksum], 1000, 0).contains(
            "<Checksum><ChecksumSHA256>rVWtNbadtsaKXJAcgWPWjifHzJaXde/iV4jaJAOdivc=</ChecksumSHA256>\
             <ChecksumType>COMPOSITE</ChecksumType></Checksum>"
        ));
    }

    #[test]
    fn attributes_come_in_s3_order_and_only_those_asked() {
        let record = multipart(vec![part(1, None)], None);
        let answer = xml(
            &record,
            &[Attribute::ObjectSize, Attribute::StorageClass],
            1000,
            0,
        );
        assert!(answer.ends_with(
            "<StorageClass>STANDARD</StorageClass><ObjectSize>5242880</ObjectSize></GetObjectAttributesResponse>"
        ));
        assert!(!answer.contains("ETag"));
    }
}
