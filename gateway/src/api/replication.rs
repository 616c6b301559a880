//! Bucket replication: Put/Get/DeleteBucketReplication, the subset of S3's configuration that
//! Tessera's regions carry out. A bucket without one replicates to every peer region; with one,
//! among the region where it was set and the regions its enabled rules name
//! (`BucketReplication::targets`).
//!
//! Accepted: `Role` (kept and shown, not used), and rules with `ID`, `Priority`, `Status`, an
//! empty `Filter` or `Prefix` (the whole bucket), `DeleteMarkerReplication` enabled, and a
//! `Destination` whose `Bucket` is `arn:aws:s3:REGION::BUCKET`, REGION a peer region and BUCKET
//! this bucket (a bucket replicates to the bucket of the same name), with `StorageClass`
//! `STANDARD` at most. Anything else of S3's configuration is refused (501 naming it), never
//! stored and ignored.
//!
//! The admin API chooses the same thing as a list of regions (`admin`).

use crate::api::{Gateway, S3Request};
use crate::ops::bucket::update_bucket;
use crate::s3::error::S3Error;
use crate::s3::response::{empty_response, json_response, xml_response, S3Response};
use crate::s3::xml::{parse_tree, Element, XmlWriter};
use http::{Response, StatusCode};
use node_rpc::body::empty;
use node_rpc::record::{BucketReplication, ReplicationRule, Versioning};

const BODY_LIMIT: u64 = 64 * 1024;
/// S3's limit on a configuration's rules.
const MAX_RULES: usize = 1000;

/// Parts of S3's configuration that Tessera does not carry out, by element name.
const NOT_DONE: [(&str, &str); 6] = [
    (
        "ExistingObjectReplication",
        "ExistingObjectReplication (use the resync of the admin API)",
    ),
    (
        "SourceSelectionCriteria",
        "SourceSelectionCriteria in a replication rule",
    ),
    ("Account", "a destination in another account"),
    (
        "AccessControlTranslation",
        "AccessControlTranslation in a replication rule",
    ),
    (
        "EncryptionConfiguration",
        "replication of encrypted objects",
    ),
    ("ReplicationTime", "Replication Time Control"),
];

/// A `<ReplicationConfiguration>` body set in region `here` for `bucket`, whose peer regions
/// are `peers`.
pub fn parse(
    body: &[u8],
    bucket: &str,
    here: &str,
    peers: &[String],
) -> Result<BucketReplication, S3Error> {
    let root = parse_tree(body, "ReplicationConfiguration")?;
    let role = root.text_of("Role").unwrap_or_default().to_string();
    let mut rules = Vec::new();
    for rule in root.all("Rule") {
        rules.push(parse_rule(rule, bucket, here, peers)?);
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::MalformedXml);
    }
    Ok(BucketReplication {
        role,
        source: here.to_string(),
        rules,
    })
}

fn parse_rule(
    rule: &Element,
    bucket: &str,
    here: &str,
    peers: &[String],
) -> Result<ReplicationRule, S3Error> {
    for element in &rule.children {
        let name = element.name.as_str();
        if let Some((_, feature)) = NOT_DONE.iter().find(|(n, _)| *n == name) {
            return Err(S3Error::NotImplemented(feature));
        }
        let known = [
            "ID",
            "Priority",
            "Status",
            "Filter",
            "Prefix",
            "DeleteMarkerReplication",
            "Destination",
        ];
        if !known.contains(&name) {
            return Err(S3Error::MalformedXml);
        }
    }
    let enabled = match rule.text_of("Status") {
        Some("Enabled") => true,
        Some("Disabled") => false,
        _ => return Err(S3Error::MalformedXml),
    };
    let whole_bucket = match (rule.child("Filter"), rule.text_of("Prefix")) {
        (None, prefix) => prefix.unwrap_or_default().is_empty(),
        (Some(filter), None) => filter
            .children
            .iter()
            .all(|c| c.name == "Prefix" && c.text.trim().is_empty()),
        (Some(_), Some(_)) => return Err(S3Error::MalformedXml),
    };
    if !whole_bucket {
        return Err(S3Error::NotImplemented(
            "replication of part of a bucket (a rule's Filter or Prefix)",
        ));
    }
    if let Some(markers) = rule.child("DeleteMarkerReplication") {
        if markers.text_of("Status") != Some("Enabled") {
            return Err(S3Error::NotImplemented(
                "replication without delete markers",
            ));
        }
    }
    let destination = rule.child("Destination").ok_or(S3Error::MalformedXml)?;
    for element in &destination.children {
        let name = element.name.as_str();
        if let Some((_, feature)) = NOT_DONE.iter().find(|(n, _)| *n == name) {
            return Err(S3Error::NotImplemented(feature));
        }
        match name {
            "Bucket" => {}
            "StorageClass" if element.text.trim() == "STANDARD" => {}
            "StorageClass" => return Err(S3Error::NotImplemented("storage classes")),
            "Metrics" => return Err(S3Error::NotImplemented("replication metrics in S3's form")),
            _ => return Err(S3Error::MalformedXml),
        }
    }
    let arn = destination.text_of("Bucket").ok_or(S3Error::MalformedXml)?;
    let region = destination_region(arn, bucket)?;
    if region != here && !peers.iter().any(|p| *p == region) {
        return Err(S3Error::InvalidRequest(format!(
            "Destination region {region} is not a peer region of {here}"
        )));
    }
    let priority = rule
        .text_of("Priority")
        .map(|p| p.parse().map_err(|_| S3Error::MalformedXml))
        .transpose()?;
    Ok(ReplicationRule {
        id: rule.text_of("ID").map(str::to_string),
        priority,
        enabled,
        region: region.to_string(),
    })
}

/// The region of a destination bucket's ARN, `arn:aws:s3:REGION::BUCKET`, which must name this
/// bucket.
fn destination_region<'a>(arn: &'a str, bucket: &str) -> Result<&'a str, S3Error> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ["arn", _, "s3", region, "", name] = parts[..] else {
        return Err(S3Error::InvalidArgument(format!(
            "the destination bucket {arn} is not an ARN of the form arn:aws:s3:REGION::BUCKET"
        )));
    };
    if region.is_empty() {
        return Err(S3Error::InvalidArgument(format!(
            "the destination bucket {arn} must name its region: arn:aws:s3:REGION::{bucket}"
        )));
    }
    if name != bucket {
        return Err(S3Error::NotImplemented(
            "replication to a bucket of another name",
        ));
    }
    Ok(region)
}

pub async fn put_replication(
    gw: &Gateway,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    req.require_integrity()?;
    let record = gw.cluster.bucket(bucket).await?;
    let here = here(gw)?;
    let config = parse(
        &req.read_small_body(BODY_LIMIT).await?,
        bucket,
        here,
        &gw.cluster.peer_regions,
    )?;
    if record.versioning != Some(Versioning::Enabled) {
        return Err(S3Error::InvalidRequest(
            "Versioning must be 'Enabled' on the bucket to apply a replication configuration"
                .into(),
        ));
    }
    update_bucket(&gw.cluster, bucket, |b| b.replication = Some(config)).await?;
    Ok(Response::new(empty()))
}

pub async fn get_replication(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    let bucket = gw.cluster.bucket(bucket).await?;
    let config = bucket
        .replication
        .ok_or(S3Error::ReplicationConfigurationNotFound)?;
    let mut xml = XmlWriter::new("ReplicationConfiguration");
    xml.elem("Role", &config.role);
    for rule in &config.rules {
        xml.open("Rule");
        if let Some(id) = &rule.id {
            xml.elem("ID", id);
        }
        if let Some(priority) = rule.priority {
            xml.elem("Priority", priority.to_string());
        }
        xml.elem("Status", if rule.enabled { "Enabled" } else { "Disabled" });
        xml.open("Filter");
        xml.elem("Prefix", "");
        xml.close();
        xml.open("DeleteMarkerReplication");
        xml.elem("Status", "Enabled");
        xml.close();
        xml.open("Destination");
        xml.elem(
            "Bucket",
            format!("arn:aws:s3:{}::{}", rule.region, bucket.name),
        );
        xml.close();
        xml.close();
    }
    Ok(xml_response(xml))
}

pub async fn delete_replication(gw: &Gateway, bucket: &str) -> Result<S3Response, S3Error> {
    update_bucket(&gw.cluster, bucket, |b| b.replication = None).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// What `PUT /_tessera/buckets/B/replication` takes: the peer regions this region sends the
/// bucket's changes to (none: the bucket stays in this region).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChosenRegions {
    regions: Vec<String>,
}

/// The admin API's `/_tessera/buckets/B/replication`: GET shows where the bucket replicates,
/// PUT chooses the regions (the same configuration PutBucketReplication makes, whatever the
/// bucket's versioning), DELETE returns to the default (every peer region).
pub async fn admin(
    gw: &Gateway,
    method: &http::Method,
    bucket: &str,
    req: S3Request,
) -> Result<S3Response, S3Error> {
    match *method {
        http::Method::GET => {}
        http::Method::PUT => {
            let here = here(gw)?;
            let body = req.read_small_body(BODY_LIMIT).await?;
            let chosen: ChosenRegions = serde_json::from_slice(&body).map_err(|e| {
                S3Error::InvalidArgument(format!(
                    "a replication choice is {{\"regions\": [...]}}: {e}"
                ))
            })?;
            if let Some(stranger) =
                (chosen.regions.iter()).find(|r| !gw.cluster.peer_regions.contains(r))
            {
                return Err(S3Error::InvalidRequest(format!(
                    "{stranger} is not a peer region of {here}"
                )));
            }
            let config = BucketReplication {
                role: String::new(),
                source: here.to_string(),
                rules: (chosen.regions.into_iter())
                    .map(|region| ReplicationRule {
                        id: Some(format!("to-{region}")),
                        priority: None,
                        enabled: true,
                        region,
                    })
                    .collect(),
            };
            update_bucket(&gw.cluster, bucket, |b| b.replication = Some(config)).await?;
        }
        http::Method::DELETE => {
            update_bucket(&gw.cluster, bucket, |b| b.replication = None).await?;
        }
        _ => return Err(S3Error::MethodNotAllowed),
    }
    let record = gw.cluster.bucket(bucket).await?;
    let sends_to = (gw.cluster.replicate(&record)).map_or_else(Vec::new, |r| r.targets);
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "bucket": record.name,
            "region": gw.cluster.region,
            "configured": record.replication.is_some(),
            "sends_to": sends_to,
        }),
    )
}

/// This region's name, if it has peers.
fn here(gw: &Gateway) -> Result<&str, S3Error> {
    gw.cluster.region.as_deref().ok_or_else(|| {
        S3Error::InvalidRequest("this cluster is one region alone: it has no peers".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(inner: &str) -> String {
        format!(
            "<ReplicationConfiguration><Role>arn:aws:iam::1:role/r</Role><Rule><ID>all</ID>\
             <Status>Enabled</Status>{inner}</Rule></ReplicationConfiguration>"
        )
    }

    fn parsed(inner: &str) -> Result<BucketReplication, S3Error> {
        let peers = ["eu-west-1".to_string()];
        parse(rule(inner).as_bytes(), "photos", "us-east-1", &peers)
    }

    const TO_EU: &str = "<Destination><Bucket>arn:aws:s3:eu-west-1::photos</Bucket></Destination>";

    #[test]
    fn the_whole_bucket_to_a_peer_region_is_taken() {
        let config = parsed(&format!("<Filter><Prefix></Prefix></Filter>{TO_EU}")).unwrap();
        assert_eq!(config.source, "us-east-1");
        assert_eq!(config.role, "arn:aws:iam::1:role/r");
        assert_eq!(config.rules[0].region, "eu-west-1");
        assert_eq!(config.rules[0].id.as_deref(), Some("all"));
        assert_eq!(config.targets("us-east-1"), ["eu-west-1"]);
        let markers = "<DeleteMarkerReplication><Status>Enabled</Status></DeleteMarkerReplication>";
        assert!(parsed(&format!("<Prefix></Prefix>{markers}{TO_EU}")).is_ok());
    }

    #[test]
    fn what_tessera_does_not_carry_out_is_refused() {
        let refused = [
            format!("<Filter><Prefix>logs/</Prefix></Filter>{TO_EU}"),
            format!("<Filter><Tag><Key>a</Key><Value>b</Value></Tag></Filter>{TO_EU}"),
            format!("<DeleteMarkerReplication><Status>Disabled</Status></DeleteMarkerReplication>{TO_EU}"),
            format!("<ExistingObjectReplication><Status>Enabled</Status></ExistingObjectReplication>{TO_EU}"),
            "<Destination><Bucket>arn:aws:s3:eu-west-1::photos</Bucket><StorageClass>GLACIER</StorageClass></Destination>".into(),
            "<Destination><Bucket>arn:aws:s3:eu-west-1::photos</Bucket><Account>1</Account></Destination>".into(),
            "<Destination><Bucket>arn:aws:s3:eu-west-1::other</Bucket></Destination>".into(),
        ];
        for inner in refused {
            assert!(
                matches!(parsed(&inner), Err(S3Error::NotImplemented(_))),
                "{inner}"
            );
        }
        let no_region = "<Destination><Bucket>arn:aws:s3:::photos</Bucket></Destination>";
        assert!(matches!(
            parsed(no_region),
            Err(S3Error::InvalidArgument(_))
        ));
        let stranger = "<Destination><Bucket>arn:aws:s3:mars-1::photos</Bucket></Destination>";
        assert!(matches!(parsed(stranger), Err(S3Error::InvalidRequest(_))));
        assert!(matches!(parsed("<Unknown/>"), Err(S3Error::MalformedXml)));
        assert!(
            matches!(parsed(""), Err(S3Error::MalformedXml)),
            "no destination"
        );
    }
}
