//! The sweep report end to end: a real coordinator on SQLite runs a synthetic sweep of two
//! families × 6 configs × 2 machine types (plus one config that always fails), the report is
//! written through the store, `asdsweep analyze results.csv --json` agrees with
//! `correlations.json`, the CLI queries answer, and headless Chromium renders `report.html`
//! with no console message and one SVG panel per family × ASD metric.

mod common;

use asdsweep_coordinator::report::{self, ReportSummary};
use asdsweep_shared::proto::{self as pb, sweep_service_client::SweepServiceClient};
use asdsweep_worker::{JobContext, JobError, JobKind, JobOutput, Registry};
use common::{Harness, spawn_worker, worker_config};
use futures::future::BoxFuture;
use std::path::Path;
use std::time::Duration;

/// The families × ASD metrics of the synthetic sweep.
const PANELS: usize = 2 * 6;

/// Stands in for training: the metrics follow the config's index, with a known direction —
/// AE's loss falls and CE's F1 rises as the configs' AUCs rise.
#[derive(Clone)]
struct Synthetic;

impl JobKind for Synthetic {
    fn kind(&self) -> asdsweep_shared::family::Kind {
        asdsweep_shared::family::noop::KIND
    }
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let job = ctx.job.clone();
        Box::pin(async move {
            if job.config == "broken" {
                return Err(JobError::permanent(
                    "synthetic failure: config <broken> & co",
                ));
            }
            let q: f64 = job
                .config
                .trim_start_matches('c')
                .parse()
                .map_err(|_| JobError::permanent("config name"))?;
            let dev = if job.device == "fan" { 0.0 } else { 0.1 };
            let wiggle = [0.0, 0.02, -0.01, 0.015, -0.02, 0.01][q as usize % 6];
            let auc = 0.6 + 0.04 * q + wiggle + dev / 2.0;
            let (metric, proxy) = if job.family == "ae" {
                ("ae_l1", 1.0 / (1.0 + q + dev))
            } else {
                ("macro_f1", 0.5 + (q + dev) / 20.0)
            };
            Ok(JobOutput {
                proxy_metric: metric.into(),
                proxy_value: Some(proxy),
                lp_in_auc: Some(auc),
                lp_in_pauc: Some(auc - 0.1),
                lp_out_auc: Some(auc - 0.05 + wiggle),
                lp_out_pauc: Some(auc - 0.15),
                md_auc: Some(if job.family == "ae" { auc } else { 1.3 - auc }),
                md_pauc: Some(0.5 + wiggle),
                provenance_json: serde_json::json!({
                    "spec_hash": job.spec_hash, "dataset_fingerprint": "synthetic-fp", "seed": job.seed,
                    "backend": "none", "device": "cpu", "code_version": "test", "wall_s": 0.01,
                })
                .to_string(),
                ..Default::default()
            })
        })
    }
}

const SPEC: &str = "version = 1\nname = \"report-demo\"\ndevices = [\"fan\", \"pump\"]\n\
    [queue]\nmax_attempts = 1\n\
    [[family]]\nkind = \"noop\"\nname = \"ae\"\nconfigs = [{ name = \"c0\" }, { name = \"c1\" }, { name = \"c2\" }, { name = \"c3\" }, { name = \"c4\" }, { name = \"c5\" }]\n\
    [[family]]\nkind = \"noop\"\nname = \"ce\"\nconfigs = [{ name = \"c0\" }, { name = \"c1\" }, { name = \"c2\" }, { name = \"c3\" }, { name = \"c4\" }, { name = \"c5\" }, { name = \"broken\" }]\n";

/// [`Synthetic`] as a worker that declares its proxy's direction reports it, with AE's
/// squared reconstruction error as a further metric (declared lower-is-better).
#[derive(Clone)]
struct Declared;

impl JobKind for Declared {
    fn kind(&self) -> asdsweep_shared::family::Kind {
        asdsweep_shared::family::noop::KIND
    }
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let run = Synthetic.run(ctx);
        Box::pin(async move {
            let mut out = run.await?;
            let lower = pb::MetricDirection::LowerIsBetter as i32;
            if out.proxy_metric == "ae_l1" {
                out.proxy_direction = lower;
                out.metrics.push(pb::NamedMetric {
                    name: "ae_mse".into(),
                    value: out.proxy_value.map(|l1| l1 * l1),
                    direction: lower,
                });
            } else {
                out.proxy_direction = pb::MetricDirection::HigherIsBetter as i32;
            }
            Ok(out)
        })
    }
}

/// Runs the synthetic sweep to the end and writes its report into `out`.
async fn finished_sweep_report(
    h: &Harness,
    out: &Path,
) -> (asdsweep_coordinator::Coordinator, ReportSummary) {
    finished_sweep_report_with(h, out, || Registry::new().with(Synthetic)).await
}

/// [`finished_sweep_report`] with the workers' job kinds from `registry`.
async fn finished_sweep_report_with(
    h: &Harness,
    out: &Path,
    registry: impl Fn() -> Registry,
) -> (asdsweep_coordinator::Coordinator, ReportSummary) {
    let coord = h.coordinator().await;
    let mut client = SweepServiceClient::connect(coord.url()).await.unwrap();
    client
        .launch(pb::LaunchRequest {
            spec_toml: SPEC.into(),
            force_new: false,
        })
        .await
        .unwrap();
    let workers: Vec<_> = (0..2)
        .map(|i| spawn_worker(worker_config(&coord.url(), &format!("w{i}")), registry()))
        .collect();
    for (handle, _stop) in workers {
        handle.await.unwrap();
    }
    let store = coord.store().clone();
    let sweep = store.resolve_sweep("report-demo").await.unwrap();
    let summary = report::write_report(&store, &sweep, out).await.unwrap();
    (coord, summary)
}

async fn asdsweep(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_asdsweep"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "asdsweep {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlations_json_is_what_analyze_computes_from_results_csv_and_the_cli_queries_agree() {
    let h = Harness::sqlite();
    let out = h.dir.path().join("out");
    let (coord, summary) = finished_sweep_report(&h, &out).await;
    assert!(!summary.provisional, "every job is final");
    assert_eq!(
        summary.dead.len(),
        2,
        "the broken config on both machine types: {:?}",
        summary.dead
    );
    assert!(
        summary.dead[0].error.contains("synthetic failure"),
        "{:?}",
        summary.dead
    );

    let results = std::fs::read_to_string(&summary.results_csv).unwrap();
    assert_eq!(results.lines().count(), 1 + 2 * 6 * 2, "{results}");
    for line in results.lines().skip(1) {
        assert!(
            !line.split(',').take(12).any(str::is_empty),
            "every metric cell is filled: {line}"
        );
    }

    let analyze: serde_json::Value = serde_json::from_str(
        &asdsweep(&["analyze", summary.results_csv.to_str().unwrap(), "--json"]).await,
    )
    .unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.correlations_json).unwrap())
            .unwrap();
    assert_eq!(written["tests"].as_array().unwrap().len(), PANELS);
    assert_eq!(
        written["tests"], analyze["tests"],
        "correlations.json tests = analyze results.csv"
    );
    assert_eq!(
        written["alignment"], analyze["alignment"],
        "correlations.json alignment = analyze results.csv"
    );
    assert_eq!(written["provisional"], false);
    let ae_lp = written["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["family"] == "ae" && t["asd_metric"] == "lp_in_auc")
        .unwrap();
    assert!(
        ae_lp["spearman_rho"].as_f64().unwrap() > 0.8,
        "AE's loss is negated before correlating: {ae_lp}"
    );
    let csv = std::fs::read_to_string(&summary.correlations_csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + PANELS);

    let url = coord.url();
    let live: serde_json::Value = serde_json::from_str(
        &asdsweep(&[
            "correlations",
            "report-demo",
            "--coordinator",
            &url,
            "--format",
            "json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(live["provisional"], false);
    for (a, b) in live["tests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(written["tests"].as_array().unwrap())
    {
        assert_eq!(
            (
                &a["family"],
                &a["asd_metric"],
                &a["spearman_rho"],
                &a["q_bh"]
            ),
            (&b["family"], &b["asd_metric"], &b["spearman_rho"], &b["q"])
        );
    }
    let filtered = asdsweep(&[
        "results",
        "report-demo",
        "--coordinator",
        &url,
        "--family",
        "ae",
        "--device",
        "pump",
        "--metric",
        "md_auc",
        "--format",
        "csv",
    ])
    .await;
    let rows: Vec<&str> = filtered.lines().collect();
    assert_eq!(
        rows[0],
        "job,state,attempts,family,config,device,seed,stage,proxy_metric,md_auc,error"
    );
    assert_eq!(rows.len(), 1 + 6, "{filtered}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains(",ae,") && r.contains(",pump,")),
        "{filtered}"
    );
    let status = asdsweep(&["status", "report-demo", "--coordinator", &url]).await;
    assert!(status.contains("family ae: 12/12 succeeded"), "{status}");
    assert!(
        status.contains("family ce: 12/14 succeeded; 12 succeeded, 2 dead"),
        "{status}"
    );
    coord.shutdown().await;
}

/// Where Chromium is, or a failure that says how to install it.
fn chromium() -> &'static str {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(path).exists() {
            return path;
        }
    }
    panic!(
        "headless Chromium is needed to check report.html and was not found at /usr/bin/chromium; install it with \
         `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium` (scripts/test.sh, the README's test command, does this)"
    );
}

/// Runs headless Chromium on a page with `extra` arguments; returns (stdout, stderr).
async fn run_chromium(page: &Path, extra: &[String]) -> (String, String) {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
    ])
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finishes within 2 minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Console messages the page logged (Chromium writes them as `…:CONSOLE:…` log lines).
fn console_messages(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_renders_in_headless_chromium_with_one_svg_panel_per_family_and_metric() {
    let h = Harness::sqlite();
    let (coord, summary) = finished_sweep_report(&h, &h.dir.path().join("out")).await;
    coord.shutdown().await;
    let page = std::fs::read_to_string(&summary.report_html).unwrap();
    for forbidden in ["<script", "http://", "https://", "url("] {
        assert!(
            !page.contains(forbidden),
            "report.html must load nothing from elsewhere, found {forbidden}"
        );
    }

    // The detector works: a page that logs is caught.
    let noisy = h.dir.path().join("noisy.html");
    std::fs::write(
        &noisy,
        "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let (_, log) = run_chromium(&noisy, &["--dump-dom".into()]).await;
    assert_eq!(
        console_messages(&log).len(),
        1,
        "chromium console lines are recognised: {log}"
    );

    let shot = h.dir.path().join("report.png");
    let (_, log) = run_chromium(
        &summary.report_html,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
        ],
    )
    .await;
    assert!(
        console_messages(&log).is_empty(),
        "report.html logged to the console: {:?}",
        console_messages(&log)
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    if let Ok(keep) = std::env::var("ASDSWEEP_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    let (dom, log) = run_chromium(&summary.report_html, &["--dump-dom".into()]).await;
    assert!(
        console_messages(&log).is_empty(),
        "{:?}",
        console_messages(&log)
    );
    let panels: Vec<&str> = dom.split("<figure class=\"panel\"").skip(1).collect();
    assert_eq!(
        panels.len(),
        PANELS,
        "one panel per family × ASD metric in the rendered DOM"
    );
    assert!(
        panels
            .iter()
            .all(|p| p.split("</figure>").next().unwrap_or("").contains("<svg")),
        "every panel holds an SVG"
    );
    for family in ["ae", "ce"] {
        for metric in [
            "lp_in_auc",
            "lp_in_pauc",
            "lp_out_auc",
            "lp_out_pauc",
            "md_auc",
            "md_pauc",
        ] {
            assert!(
                dom.contains(&format!(
                    "data-family=\"{family}\" data-metric=\"{metric}\""
                )),
                "panel {family} × {metric}"
            );
        }
    }
    assert!(
        dom.contains("synthetic failure: config &lt;broken&gt; &amp; co"),
        "failures are listed, escaped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_directions_and_further_metrics_reach_results_and_correlations() {
    let h = Harness::sqlite();
    let out = h.dir.path().join("out");
    let (coord, summary) =
        finished_sweep_report_with(&h, &out, || Registry::new().with(Declared)).await;
    let url = coord.url();
    let results = std::fs::read_to_string(&summary.results_csv).unwrap();
    assert!(
        results
            .lines()
            .next()
            .unwrap()
            .ends_with(",job,worker,proxy_direction,ae_mse"),
        "{results}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary.correlations_json).unwrap())
            .unwrap();
    assert_eq!(written["directions"]["ae"], "lower_is_better");
    assert_eq!(written["directions"]["ce"], "higher_is_better");

    // `results --format json` shows each row's proxy, its direction and its further metrics.
    let rows: serde_json::Value = serde_json::from_str(
        &asdsweep(&[
            "results",
            "report-demo",
            "--coordinator",
            &url,
            "--format",
            "json",
        ])
        .await,
    )
    .unwrap();
    let ae = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["family"] == "ae")
        .unwrap();
    assert_eq!(ae["proxy_direction"], "lower_is_better");
    assert_eq!(ae["metrics"]["ae_mse"]["direction"], "lower_is_better");
    let l1 = ae["proxy_value"].as_f64().unwrap();
    assert_eq!(ae["metrics"]["ae_mse"]["value"].as_f64(), Some(l1 * l1));
    // `--metric` takes a further metric's name.
    let mse = asdsweep(&[
        "results",
        "report-demo",
        "--coordinator",
        &url,
        "--metric",
        "ae_mse",
        "--format",
        "csv",
    ])
    .await;
    let lines: Vec<&str> = mse.lines().collect();
    assert_eq!(
        lines[0],
        "job,state,attempts,family,config,device,seed,stage,proxy_metric,ae_mse,error"
    );
    assert_eq!(lines.len(), 1 + 6 * 2, "AE's evaluations: {mse}");

    // `correlations --proxy` correlates that metric, with its declared direction.
    let main: serde_json::Value = serde_json::from_str(
        &asdsweep(&[
            "correlations",
            "report-demo",
            "--coordinator",
            &url,
            "--format",
            "json",
        ])
        .await,
    )
    .unwrap();
    let by_mse: serde_json::Value = serde_json::from_str(
        &asdsweep(&[
            "correlations",
            "report-demo",
            "--coordinator",
            &url,
            "--proxy",
            "ae_mse",
            "--format",
            "json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(by_mse["proxy"], "ae_mse");
    assert_eq!(
        (&by_mse["rows_used"], &by_mse["rows_without_proxy"]),
        (&12.into(), &12.into())
    );
    let tests = by_mse["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 6, "only AE reports ae_mse");
    for t in tests {
        let same = main["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["family"] == "ae" && m["asd_metric"] == t["asd_metric"])
            .unwrap();
        assert_eq!(
            t["spearman_rho"], same["spearman_rho"],
            "L1 and its square rank the configs alike, both lower-is-better"
        );
    }
    let table = asdsweep(&[
        "correlations",
        "report-demo",
        "--coordinator",
        &url,
        "--proxy",
        "ae_mse",
    ])
    .await;
    assert!(
        table.contains("12 result rows with metric ae_mse as the proxy (12 without a value of ae_mse, left out)"),
        "{table}"
    );
    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_asdsweep"))
        .args([
            "correlations",
            "report-demo",
            "--coordinator",
            &url,
            "--proxy",
            "ae_msq",
        ])
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("\"ae_msq\"") && err.contains("ae_l1, ae_mse, macro_f1"),
        "{err}"
    );
    coord.shutdown().await;
}

on_sqlite_and_postgres!(the_report_and_the_family_counts_come_from_either_database);

async fn the_report_and_the_family_counts_come_from_either_database(h: &Harness) {
    let (coord, summary) = finished_sweep_report(h, &h.dir.path().join("out")).await;
    assert_eq!(
        (summary.result_rows, summary.tests, summary.provisional),
        (2 * 6 * 2, PANELS, false)
    );
    let store = coord.store();
    let sweep = store.resolve_sweep("report-demo").await.unwrap();
    let families = report::family_progress(store, sweep.id).await.unwrap();
    let totals: Vec<(&str, u64)> = families
        .iter()
        .map(|f| (f.family.as_str(), f.total))
        .collect();
    assert_eq!(totals, [("ae", 12), ("ce", 14)]);
    let count = |f: &pb::FamilyProgress, state: &str| {
        f.counts.iter().find(|c| c.state == state).map(|c| c.count)
    };
    assert_eq!(
        (
            count(&families[1], "succeeded"),
            count(&families[1], "dead")
        ),
        (Some(12), Some(2))
    );
    coord.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlations_of_a_sweep_with_open_jobs_are_marked_provisional() {
    let h = Harness::sqlite();
    let coord = h.coordinator().await;
    let mut client = SweepServiceClient::connect(coord.url()).await.unwrap();
    client
        .launch(pb::LaunchRequest {
            spec_toml: SPEC.into(),
            force_new: false,
        })
        .await
        .unwrap();
    let c = client
        .correlations(pb::CorrelationsRequest {
            sweep: "report-demo".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        c.provisional && c.open_jobs == 26 && c.lines.is_empty(),
        "{c:?}"
    );
    let table = asdsweep(&["correlations", "report-demo", "--coordinator", &coord.url()]).await;
    assert!(
        table.contains("PROVISIONAL: 26 jobs are still open"),
        "{table}"
    );
    let missing = client
        .correlations(pb::CorrelationsRequest {
            sweep: "no-such-sweep".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing.message().contains("no-such-sweep"),
        "{}",
        missing.message()
    );
    coord.shutdown().await;
}
