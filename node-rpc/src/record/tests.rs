use super::*;

#[test]
fn revisions_made_at_once_in_two_regions_differ_and_one_wins_everywhere() {
    let (east, west) = (revision_after(0, 1), revision_after(0, 2));
    assert_ne!(east, west);
    assert!(west > east, "the same count: the higher region number wins");
    assert!(
        revision_after(east, 1) > west,
        "a later change wins over both"
    );
    assert!(
        revision_after(west, 1) > west,
        "a change made after seeing the other wins"
    );
    assert!(
        revision_after(3, 0) > 3,
        "a revision from before regions is older"
    );
    let last = revision_after(u32::MAX, 7);
    assert_eq!(last & 0xFF, 7, "the count saturates, the region stays");
}

#[test]
fn a_bucket_replicates_among_its_source_and_enabled_rules_regions() {
    let rule = |region: &str, enabled| ReplicationRule {
        region: region.into(),
        enabled,
        ..ReplicationRule::default()
    };
    let config = BucketReplication {
        role: String::new(),
        source: "us-east-1".into(),
        rules: vec![rule("eu-west-1", true), rule("ap-south-1", false)],
    };
    assert_eq!(config.targets("us-east-1"), ["eu-west-1"]);
    assert_eq!(config.targets("eu-west-1"), ["us-east-1"]);
    assert!(
        config.targets("ap-south-1").is_empty(),
        "a disabled rule's region"
    );
    assert!(
        config.targets("sa-east-1").is_empty(),
        "a region outside the group"
    );
}

#[test]
fn versions_increase_and_round_trip() {
    let a = Version::now();
    let b = Version::now();
    assert!(b > a);
    assert_eq!(a.to_string().parse::<Version>(), Ok(a));
    assert!(
        a.to_string() < b.to_string(),
        "string order follows version order"
    );
    assert!("xyz".parse::<Version>().is_err());
    assert_eq!("null".parse::<VersionRef>(), Ok(VersionRef::Null));
    assert_eq!(
        a.to_string().parse::<VersionRef>(),
        Ok(VersionRef::Id(a)),
        "version ids are versions"
    );
    assert!("Null".parse::<VersionRef>().is_err());
}

#[test]
fn versions_made_after_observing_a_newer_one_order_after_it() {
    // A little ahead only: the clock is the whole test process's.
    let ahead = Version {
        micros: wall_micros() + 2_000,
        salt: u32::MAX,
    };
    Version::observe(ahead);
    assert!(Version::now() > ahead);
    let older = Version { micros: 1, salt: 0 };
    Version::observe(older);
    assert!(Version::now() > ahead, "an older version moves nothing");

    let wall = 1_000_000_000;
    let far = Version {
        micros: wall + 3_600_000_000,
        salt: 0,
    };
    assert_eq!(observable(far, wall), wall + MAX_SKEW_MICROS);
    let near = Version {
        micros: wall + 5_000_000,
        salt: 0,
    };
    assert_eq!(observable(near, wall), near.micros);
}

#[test]
fn a_region_number_tops_the_tie_breaker() {
    assert_eq!(salt(0, 0xdead_beef), 0xdead_beef, "no region: all random");
    assert_eq!(salt(2, 0xdead_beef), 0x02ad_beef);
    assert_eq!(salt(255, 0xffff_ffff), 0xffff_ffff);
    // Of two versions made at one microsecond, region 2's orders after region 1's.
    let tie = |region| Version {
        micros: 7,
        salt: salt(region, 0xffff_ffff),
    };
    assert!(tie(1) < tie(2));
}

#[test]
fn fragment_ids_depend_on_every_part() {
    let a = fragment_id(&[b"ab", b"c"]);
    assert_ne!(a, fragment_id(&[b"a", b"bc"]));
    assert!(is_fragment_id(&a));
    assert!(!is_fragment_id("../etc/passwd"));
}

#[test]
fn inline_text_with_a_backslash_is_refused() {
    // Found by fuzzing (fuzz/, node_protocol): this was kept as the raw `"AP8H\/A=="`, which
    // re-encoded and read again (a record passed on) meant `AP8H/A==` instead.
    for json in [r#""AP8H\\/A==""#, r#""A\\\\""#, r#""A\\nB""#] {
        assert!(serde_json::from_str::<Inline>(json).is_err(), "{json}");
    }
    let plain: Inline = serde_json::from_str(r#""AP8H\/A==""#).unwrap();
    let again: Inline = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
    assert_eq!(again, plain);
    assert_eq!(plain.decode().unwrap(), [0, 255, 7, 252]);
}

#[test]
fn inline_fragments_round_trip_and_only_canonical_base64_decodes() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    // Every length around the SIMD decoder's block sizes, against the scalar reference.
    for len in (0..200).chain([2047, 2048, 2049, 4096]) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
        let inline = Inline::encode(&bytes);
        assert_eq!(inline.base64(), STANDARD.encode(&bytes), "{len}");
        assert_eq!(inline.decode().unwrap(), bytes, "{len}");
    }
    // Unpadded, bits past the end, a character outside the alphabet, URL-safe letters, a gap.
    for text in ["QQ", "QR==", "QUJ=", "QUJD*", "ab-_", "QUJD QUJD", "=QUJ"] {
        let json = format!("\"{text}\"");
        let inline: Inline = serde_json::from_str(&json).unwrap();
        assert!(inline.decode().is_err(), "{text}");
        assert!(
            STANDARD.decode(text).is_err(),
            "{text}: the reference refuses it too"
        );
    }
}

/// A part of three bytes, with the inline bytes and frame format given.
fn small_part(inline: Option<Inline>, frames: FrameFormat) -> PartData {
    PartData {
        number: 1,
        size: 3,
        md5: "00".into(),
        block_size: 4,
        fragment_id: fragment_id(&[b"x"]),
        inline,
        checksum: None,
        key: None,
        frames,
    }
}

#[test]
fn a_part_names_its_frame_format_from_format_2_on() {
    let part = small_part(None, FrameFormat::PositionLast);
    let json = serde_json::to_string(&part).unwrap();
    assert!(json.contains(r#""frames":2"#), "{json}");
    assert_eq!(serde_json::from_str::<PartData>(&json).unwrap(), part);
    assert_eq!(part.layout(4).frames, FrameFormat::PositionLast);
    let checksummed = json.replace(r#""frames":2"#, r#""frames":3"#);
    let checksummed = serde_json::from_str::<PartData>(&checksummed).unwrap();
    assert_eq!(checksummed.frames, FrameFormat::Checksummed);
    let unknown = json.replace(r#""frames":2"#, r#""frames":4"#);
    assert!(serde_json::from_str::<PartData>(&unknown).is_err());
    let before = json.replace(r#","frames":2"#, "");
    let old = serde_json::from_str::<PartData>(&before).unwrap();
    assert_eq!(old.frames, FrameFormat::PositionFirst, "{before}");
}

#[test]
fn inline_bytes_survive_json() {
    let part = small_part(
        Some(Inline::encode(&[0, 255, 7])),
        FrameFormat::PositionFirst,
    );
    let json = serde_json::to_string(&part).unwrap();
    assert!(json.contains(r#""inline":"AP8H""#), "{json}");
    assert!(
        !json.contains("frames"),
        "format 1 is written as before: {json}"
    );
    assert_eq!(serde_json::from_str::<PartData>(&json).unwrap(), part);
    assert_eq!(
        serde_json::from_reader::<_, PartData>(json.as_bytes()).unwrap(),
        part,
        "text that cannot be borrowed"
    );
    let bytes: Vec<u8> = (0..=255).collect();
    let slashes = PartData {
        inline: Some(Inline::encode(&bytes)),
        ..part.clone()
    };
    let escaped = serde_json::to_string(&slashes).unwrap().replace('/', r"\/");
    assert_eq!(serde_json::from_str::<PartData>(&escaped).unwrap(), slashes);
    for none in [
        serde_json::to_string(&PartData {
            inline: None,
            ..part.clone()
        })
        .unwrap(),
        json.replace(r#""AP8H""#, "null"),
    ] {
        assert_eq!(
            serde_json::from_str::<PartData>(&none).unwrap().inline,
            None
        );
    }
    let back = serde_json::from_str::<PartData>(&escaped).unwrap();
    let decoded = back.inline.unwrap().decode().unwrap();
    assert!(decoded.iter().copied().eq(0..=255u8));
    for not_string in ["5", r#"["AP8H"]"#] {
        let bad = json.replace(r#""AP8H""#, not_string);
        assert!(serde_json::from_str::<PartData>(&bad).is_err(), "{bad}");
    }
    let odd = [
        r#""A\"8H""#,
        r#""A\\8H""#,
        r#""A\u0001H""#,
        r#""A\n8H""#,
        r#""AP8H\\/A==""#,
        r#""AP8H\\\\A==""#,
    ];
    for not_base64 in [r#""A!8H""#, r#""AP8""#, r#""AP=H""#].iter().chain(&odd) {
        let bad = json.replace(r#""AP8H""#, not_base64);
        let part = serde_json::from_str::<PartData>(&bad);
        assert!(
            part.map_or(true, |p| p.inline.unwrap().decode().is_err()),
            "{bad}"
        );
    }
}
