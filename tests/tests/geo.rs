//! Geolocation of exit addresses from MaxMind-format databases built by the test writer
//! (`proxyharvest_tests::mmdb`): lookups, enrichment of a published list, loading from files
//! and S3, and `proxyharvest scan` end to end against the loopback farm, whose exit address is
//! 127.0.0.2.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use proxyharvest::consume::{Format, Query, render};
use proxyharvest::geo::{DbKind, DbLocation, GeoDb, GeoError, GeoSettings, load};
use proxyharvest::list::PublishedList;
use proxyharvest::outcome::{Alive, Anonymity, CheckResult, Outcome, Timings};
use proxyharvest::proxy::{Protocol, ProtocolSet, Proxy};
use proxyharvest_tests::farm::{self, EXIT_IP, Kind};
use proxyharvest_tests::judge::{self, JudgeFormat};
use proxyharvest_tests::mmdb::{Writer, asn, country};
use proxyharvest_tests::sources::{Route, SourcesServer};
use proxyharvest_tests::stack::{Stack, cli_binary};

fn country_db() -> Vec<u8> {
    Writer::new("GeoLite2-Country")
        .insert("127.0.0.0/8", country("AU"))
        .insert("127.0.0.2/32", country("nz"))
        .insert("198.51.100.0/24", country("DE"))
        .insert("2001:db8::/32", country("FR"))
        .build()
}

fn asn_db() -> Vec<u8> {
    Writer::new("GeoLite2-ASN")
        .insert("127.0.0.2/31", asn(64_500, "Loopback Exit Networks"))
        .insert("2001:db8:1::/48", asn(64_501, "Documentation v6"))
        .build()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn lookups_find_the_most_specific_network_and_nothing_else() {
    let db = GeoDb::from_bytes(Some(country_db()), Some(asn_db())).unwrap();
    // Upper-cased as the list requires; the /32 wins over the /8 around it.
    assert_eq!(
        db.lookup(ip("127.0.0.2")),
        (Some("NZ".into()), Some(64_500))
    );
    assert_eq!(
        db.lookup(ip("127.0.0.3")),
        (Some("AU".into()), Some(64_500))
    );
    assert_eq!(db.lookup(ip("127.9.9.9")), (Some("AU".into()), None));
    assert_eq!(db.lookup(ip("198.51.100.77")), (Some("DE".into()), None));
    assert_eq!(db.lookup(ip("203.0.113.1")), (None, None));
    assert_eq!(
        db.lookup(ip("2001:db8:1::5")),
        (Some("FR".into()), Some(64_501))
    );
    assert_eq!(db.lookup(ip("2001:db8:2::5")), (Some("FR".into()), None));
    assert_eq!(db.lookup(ip("2a00::1")), (None, None));
}

#[test]
fn a_value_that_is_not_a_country_code_is_unknown() {
    let db = GeoDb::from_bytes(
        Some(
            Writer::new("t")
                .insert("10.0.0.0/8", country("Germany"))
                .build(),
        ),
        None,
    )
    .unwrap();
    assert_eq!(db.lookup(ip("10.1.2.3")), (None, None));
}

fn alive(proxy: &str, exit: IpAddr) -> CheckResult {
    let proxy: Proxy = proxy.parse().unwrap();
    CheckResult {
        outcome: Outcome::Alive(Alive {
            protocols: ProtocolSet::from_iter([Protocol::Http]),
            anonymity: Anonymity::Elite,
            exit_ip: exit,
            latency_ms: 40,
            timings: Timings::default(),
        }),
        proxy,
        checked_at: SystemTime::now(),
    }
}

fn merged(results: &[CheckResult]) -> PublishedList {
    proxyharvest::merge::merge(
        None,
        results,
        proxyharvest::list::CheckParams {
            judge: "http://127.0.0.1:9/".into(),
            timeout_ms: 1000,
            connect_timeout_ms: 500,
        },
        None,
        &proxyharvest::merge::MergePolicy {
            now: SystemTime::now(),
            max_age: Duration::from_secs(3600),
        },
    )
}

#[test]
fn enrich_sets_what_each_database_knows_and_leaves_the_rest_absent() {
    let results = [
        alive("http://192.0.2.1:8080", ip("127.0.0.2")),
        alive("http://192.0.2.2:8080", ip("203.0.113.9")),
        alive("http://192.0.2.3:8080", ip("2001:db8:1::9")),
    ];
    let by_host = |list: &PublishedList, host: &str| {
        let p = list
            .proxies
            .iter()
            .find(|p| p.host.to_string() == host)
            .unwrap();
        (p.country.clone(), p.asn)
    };
    let mut list = merged(&results);
    GeoDb::from_bytes(Some(country_db()), Some(asn_db()))
        .unwrap()
        .enrich(&mut list);
    assert_eq!(
        by_host(&list, "192.0.2.1"),
        (Some("NZ".into()), Some(64_500))
    );
    assert_eq!(by_host(&list, "192.0.2.2"), (None, None));
    assert_eq!(
        by_host(&list, "192.0.2.3"),
        (Some("FR".into()), Some(64_501))
    );
    // Absent fields stay out of the document; present ones round-trip.
    let json = String::from_utf8(list.to_json()).unwrap();
    assert_eq!(json.matches("\"country\"").count(), 2, "{json}");
    assert_eq!(PublishedList::from_json(json.as_bytes()).unwrap(), list);

    // With only an ASN database, no country appears: nothing is guessed.
    let mut list = merged(&results);
    GeoDb::from_bytes(None, Some(asn_db()))
        .unwrap()
        .enrich(&mut list);
    assert_eq!(by_host(&list, "192.0.2.1"), (None, Some(64_500)));
    assert!(list.proxies.iter().all(|p| p.country.is_none()));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxyharvest-geo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn load_reads_files_and_names_a_corrupt_one() {
    let dir = temp_dir("load");
    let good = write(&dir, "Country.mmdb", &country_db());
    let settings = GeoSettings {
        country_db: Some(DbLocation::Path(good.clone())),
        asn_db: None,
    };
    let db = load(&settings, None).await.unwrap().expect("enabled");
    assert_eq!(db.lookup(ip("127.0.0.2")), (Some("NZ".into()), None));

    // A truncated file: the metadata marker is gone.
    let mut bytes = asn_db();
    bytes.truncate(bytes.len() / 2);
    let bad = write(&dir, "ASN.mmdb", &bytes);
    let settings = GeoSettings {
        country_db: Some(DbLocation::Path(good)),
        asn_db: Some(DbLocation::Path(bad.clone())),
    };
    let e = load(&settings, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            GeoError::Invalid {
                kind: DbKind::Asn,
                ..
            }
        ),
        "{e:?}"
    );
    let want = format!(
        "the ASN database {} is not a valid MaxMind DB file",
        bad.display()
    );
    assert!(e.to_string().starts_with(&want), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_geolocates_exit_addresses_and_get_output_shows_them() {
    let judge = judge::start(JudgeFormat::Own).await;
    let farm = farm::start(&[Kind::Elite, Kind::Socks5]).await;
    let list: String = farm.list_text();
    let sources = SourcesServer::start(vec![("/l.txt".into(), Route::text(list))]).await;
    let dir = temp_dir("scan");
    let country_path = write(&dir, "GeoLite2-Country.mmdb", &country_db());
    let asn_path = write(&dir, "GeoLite2-ASN.mmdb", &asn_db());
    let out_dir = dir.join("out");

    let scan = |env: Vec<(&'static str, PathBuf)>| {
        let mut cmd = tokio::process::Command::new(cli_binary());
        cmd.args([
            "scan",
            "--allow-private",
            "--source",
            &sources.url("/l.txt"),
        ])
        .args(["--judge", judge.url().as_str()])
        .arg("--out")
        .arg(&out_dir)
        // The default https judge is public: no network here.
        .env("PROXYHARVEST_CHECK_JUDGE_HTTPS", "")
        .env_remove("PROXYHARVEST_GEO_COUNTRY_DB")
        .env_remove("PROXYHARVEST_GEO_ASN_DB")
        .envs(env);
        async move { cmd.output().await.expect("the CLI runs") }
    };

    let out = scan(vec![
        ("PROXYHARVEST_GEO_COUNTRY_DB", country_path.clone()),
        ("PROXYHARVEST_GEO_ASN_DB", asn_path),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc = std::fs::read(out_dir.join(proxyharvest::publish::DOCUMENT)).unwrap();
    let list = PublishedList::from_json(&doc).unwrap();
    assert_eq!(list.proxies.len(), 2, "{}", text(&doc));
    for p in &list.proxies {
        assert_eq!(p.exit_ip, IpAddr::V4(EXIT_IP));
        assert_eq!((p.country.as_deref(), p.asn), (Some("NZ"), Some(64_500)));
    }
    // What `proxyharvest get --country nz` prints from it.
    let query = Query {
        country: Some("nz".into()),
        ..Query::default()
    };
    let selected = query.select(&list, SystemTime::now()).unwrap();
    assert_eq!(selected.len(), 2);
    let csv = render(&list, &selected, Format::Csv, None);
    assert!(
        csv.lines().next().unwrap().ends_with(",country,asn"),
        "{csv}"
    );
    assert!(
        csv.lines().skip(1).all(|row| row.ends_with(",NZ,64500")),
        "{csv}"
    );
    let json = render(&list, &selected, Format::Json, None);
    assert_eq!(json.matches("\"country\":\"NZ\"").count(), 2, "{json}");
    assert_eq!(json.matches("\"asn\":64500").count(), 2, "{json}");

    // The next scan without databases writes no country: never carried over, never guessed.
    let out = scan(vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = std::fs::read(out_dir.join(proxyharvest::publish::DOCUMENT)).unwrap();
    let list = PublishedList::from_json(&doc).unwrap();
    assert_eq!(list.proxies.len(), 2);
    assert!(
        list.proxies
            .iter()
            .all(|p| p.country.is_none() && p.asn.is_none())
    );
    let e = query.select(&list, SystemTime::now()).unwrap_err();
    assert!(e.to_string().contains("geolocation is not enabled"), "{e}");

    // A corrupt database stops the scan before any checking, naming the file.
    let corrupt = write(&dir, "corrupt.mmdb", b"\xAB\xCD\xEFMaxMind.com");
    let out = scan(vec![("PROXYHARVEST_GEO_COUNTRY_DB", corrupt.clone())]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the country database {} is not a valid MaxMind DB file",
            corrupt.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("checking"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs the local stack (make local-test)"]
async fn the_publisher_enriches_from_a_database_in_s3() {
    let stack = Stack::from_env().await;
    let s3 = proxyharvest::aws::s3(&stack.sdk);
    let bucket = proxyharvest::bucket::Bucket::new(s3.clone(), &stack.bucket);
    let key = format!("geo-test-{}/GeoLite2-Country.mmdb", std::process::id());
    bucket
        .put(&key, country_db(), "application/octet-stream")
        .await
        .unwrap();
    let settings = GeoSettings {
        country_db: Some(format!("s3://{}/{key}", stack.bucket).parse().unwrap()),
        asn_db: None,
    };
    let geo = load(&settings, Some(&s3))
        .await
        .unwrap()
        .map(std::sync::Arc::new);
    let prefix = format!("geo-test-{}/list/", std::process::id());
    let publisher = proxyharvest::publish::Publisher::new(bucket.clone(), prefix).with_geo(geo);
    let results = [alive("http://192.0.2.10:8080", ip("198.51.100.4"))];
    let params = proxyharvest::list::CheckParams {
        judge: "http://127.0.0.1:9/".into(),
        timeout_ms: 1000,
        connect_timeout_ms: 500,
    };
    publisher
        .publish(
            &results,
            &params,
            Some("geo-test"),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let published = publisher.published().await.unwrap().unwrap();
    assert_eq!(published.proxies[0].country.as_deref(), Some("DE"));
    assert_eq!(published.proxies[0].asn, None);

    let missing = GeoSettings {
        country_db: None,
        asn_db: Some(
            format!("s3://{}/geo-test-missing.mmdb", stack.bucket)
                .parse()
                .unwrap(),
        ),
    };
    let e = load(&missing, Some(&s3)).await.unwrap_err();
    assert!(
        matches!(
            e,
            GeoError::Missing {
                kind: DbKind::Asn,
                ..
            }
        ),
        "{e}"
    );
}
