//! The status page, in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `scripts/install-deps.sh services`) loads `/` from
//! a running `tidemill` while records flow, and the rendered page shows the
//! pipeline's owned partitions, the latency breakdown of every stage, the
//! dead letter with its reason and message, and throughput. A screenshot is
//! kept at `target/status-page.png` (a CI artefact).

mod common;

use common::db::TestDb;
use common::http::{free_port, get};
use common::kafka::{self, TestProducer};
use common::process::{write_config, Tidemill};
use common::{pipeline_toml, unique, wait_for_showing};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PARTITIONS: i32 = 3;

/// The browser, by the names Debian and others install it under.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium on PATH: run `scripts/install-deps.sh services`")
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("browser profile");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            // Timers (the page's polling) run in virtual time; a fetch in
            // flight holds it, so the page renders what the instance answered.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Occurrences of `class="name"` in the rendered DOM.
fn count_class(dom: &str, name: &str) -> usize {
    dom.matches(&format!("class=\"{name}\"")).count()
}

#[tokio::test]
async fn the_status_page_renders_partitions_stages_and_dead_letters_in_a_browser() {
    let db = TestDb::postgres().await;
    db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)")
        .await;
    let (topic, dlq) = (unique("status"), unique("status-dlq"));
    kafka::create_topic(&topic, PARTITIONS).await;
    kafka::create_topic(&dlq, 1).await;
    let port = free_port();
    let toml = format!(
        "[health]\nlisten = \"127.0.0.1:{port}\"\nstatistics_interval = \"200ms\"\n{}\
         [pipelines.p.dead_letter]\ntopic = \"{dlq}\"\n",
        pipeline_toml(&topic, &unique("g"), db.url(), "t", "")
    );
    let (_dir, path) = write_config(&toml);
    let process = Tidemill::start(Path::new(&path), "run");
    let log = || process.log_text();
    // Records keep flowing, paced over several sampling intervals once the
    // pipeline is in its group, so the page has history to draw.
    wait_for_showing("ready", Duration::from_secs(60), &log, || async {
        get(port, "/readyz").await.0 == 200
    })
    .await;
    let producer = TestProducer::new(&topic);
    producer.send(Some("poison"), Some(r#"{"id":"#));
    for i in 0..600 {
        producer.send(
            Some(&i.to_string()),
            Some(&format!(r#"{{"id":{i},"name":"n{i}"}}"#)),
        );
        if i % 30 == 29 {
            producer.flush();
            tokio::time::sleep(Duration::from_millis(400)).await; // pacing the producer, not waiting on tidemill
        }
    }
    producer.flush();
    wait_for_showing(
        "every row loaded and two sampled intervals with records",
        Duration::from_secs(90),
        &log,
        || async {
            let (_, body) = get(port, "/status").await;
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) else {
                return false;
            };
            let p = &doc["pipelines"][0];
            let busy = p["history"].as_array().map_or(0, |h| {
                h.iter()
                    .filter(|x| x["records_in_per_s"].as_f64() > Some(0.0))
                    .count()
            });
            p["counters"]["rows_loaded"] == 600
                && p["partitions"].as_array().map(Vec::len) == Some(PARTITIONS as usize)
                && busy >= 2
        },
    )
    .await;

    let url = format!("http://127.0.0.1:{port}/");
    let dom = browse(&url, &["--dump-dom"]);
    assert!(
        dom.contains("data-polls=\"") && !dom.contains("data-polls=\"0\""),
        "the page polled /status:\n{dom}"
    );
    assert!(dom.contains("id=\"pipeline-p\""), "{dom}");
    assert!(dom.contains(">ready<"), "the pipeline shows ready:\n{dom}");
    assert_eq!(
        count_class(&dom, "partition"),
        PARTITIONS as usize,
        "a row per owned partition:\n{dom}"
    );
    for stage in [
        "kafka", "batching", "queue", "state", "write", "commit", "offsets",
    ] {
        assert!(
            dom.contains(&format!("data-stage=\"{stage}\"")),
            "stage {stage} listed:\n{dom}"
        );
    }
    assert!(dom.contains("<rect"), "the latency chart has bars:\n{dom}");
    assert!(
        dom.contains("<polyline"),
        "the throughput chart has lines:\n{dom}"
    );
    assert_eq!(
        count_class(&dom, "letter"),
        1,
        "the dead letter listed:\n{dom}"
    );
    assert!(dom.contains("decode: 1"), "dead letters by reason:\n{dom}");
    assert!(
        dom.contains(&format!("{topic}[")),
        "the letter names its record:\n{dom}"
    );
    assert!(dom.contains("600 in total"), "rows loaded:\n{dom}");

    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &url,
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "a screenshot at {} ({size} bytes)",
        shot.display()
    );
}
