//! The gateway's layers use only those below them (see `lib.rs`): `s3` knows nothing of the
//! cluster, `ops` nothing of requests or workers, `background` nothing of requests.

use std::fs;
use std::path::Path;

/// Each layer, and the layers of the gateway it must not name.
const FORBIDDEN: [(&str, &[&str]); 3] = [
    ("s3", &["ops", "background", "api", "server"]),
    ("ops", &["background", "api", "server"]),
    ("background", &["api", "server"]),
];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

#[test]
fn layers_only_use_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources under src/{layer}");
        for (path, text) in files {
            for below in forbidden {
                let needle = format!("crate::{below}::");
                if text.contains(&needle) {
                    violations.push(format!("{path} names {needle}"));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_s3_layer_names_no_node_calls() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/s3"),
        &mut files,
    );
    for (path, text) in files {
        for cluster_part in ["node_rpc::client", "node_rpc::protocol", "placement::"] {
            assert!(!text.contains(cluster_part), "{path} names {cluster_part}");
        }
    }
}
