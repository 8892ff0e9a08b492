//! End-to-end tests of the audio subcommands through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_asdsweep"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the asdsweep binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn features_of_a_wav_equal_the_librosa_fixture() {
    let d = tempfile::tempdir().unwrap();
    for name in ["pcm24_16k_8ch", "pcm16_48k_mono", "float32_16k_clipped"] {
        let out = d.path().join(format!("{name}.npy"));
        let o = run(&[
            "features",
            s(&fixtures().join(format!("{name}.wav"))),
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        let got = asdsweep_shared::npy::read_f32(&out).unwrap();
        let want = asdsweep_shared::npy::read_f32(&fixtures().join(format!("{name}.npy"))).unwrap();
        assert_eq!(got.dim(), want.dim());
        assert_eq!(got.dim().0, 128);
        let worst = got
            .iter()
            .zip(want.iter())
            .filter(|(_, w)| **w > -100.0)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.01, "{name}: {worst} dB");
    }
}

#[test]
fn features_of_a_directory_mirror_the_tree_with_one_npy_per_wav() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir_all(input.join("fan/train")).unwrap();
    std::fs::copy(fixtures().join("pcm16_16k_mono.wav"), input.join("a.wav")).unwrap();
    std::fs::copy(
        fixtures().join("pcm8_16k_mono.wav"),
        input.join("fan/train/b.wav"),
    )
    .unwrap();
    std::fs::write(input.join("notes.txt"), "not audio").unwrap();
    let out = d.path().join("out");
    let o = run(&["features", s(&input), "--out", s(&out)]);
    assert!(o.status.success(), "{:?}", text(&o));
    let a = asdsweep_shared::npy::read_f32(&out.join("a.npy")).unwrap();
    assert_eq!(a.dim(), (128, 1 + 24001 / 512));
    assert!(out.join("fan/train/b.npy").exists());
    assert!(!out.join("notes.npy").exists());
}

#[test]
fn a_truncated_or_corrupt_wav_fails_naming_the_file_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("pcm16_16k_mono.wav")).unwrap();
    let cut = d.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let junk = d.path().join("junk.wav");
    std::fs::write(&junk, b"this is not a wav file at all").unwrap();
    for (wav, problem) in [(&cut, "truncated"), (&junk, "not a valid WAV")] {
        let out = d.path().join("x.npy");
        let o = run(&["features", s(wav), "--out", s(&out)]);
        let (_, err) = text(&o);
        assert!(!o.status.success());
        assert!(err.contains(s(wav)) && err.contains(problem), "{err}");
        assert!(!out.exists(), "no output for a failed file");
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no partial files: {leftovers:?}");
    }
    // In a directory, the good file is written and the run still fails, naming the bad one.
    let dir = d.path().join("mix");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join("pcm16_16k_1023.wav"), dir.join("good.wav")).unwrap();
    std::fs::write(dir.join("bad.wav"), &bytes[..100]).unwrap();
    let out = d.path().join("mix_out");
    let o = run(&["features", s(&dir), "--out", s(&out)]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("bad.wav"), "{err}");
    assert!(out.join("good.npy").exists() && !out.join("bad.npy").exists());
}

#[test]
fn synth_then_data_check_is_clean_and_then_finds_a_renamed_and_a_corrupt_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("synth");
    let o = run(&[
        "synth",
        "--out",
        s(&root),
        "--devices",
        "fan,valve",
        "--sections",
        "2",
        "--train",
        "4",
        "--test",
        "2",
        "--seconds",
        "0.5",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&["data", "check", s(&root)]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("layout dcase2021") && out.contains("no problems"),
        "{out}"
    );
    // fan, section 0, train, normal: 4 source + 1 target.
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(5).collect::<Vec<_>>()
                == ["fan", "0", "train", "normal", "5"]),
        "{out}"
    );

    let train = root.join("valve/train");
    let mut names: Vec<_> = std::fs::read_dir(&train)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::rename(&names[0], train.join("renamed_by_someone.wav")).unwrap();
    let b = std::fs::read(&names[1]).unwrap();
    std::fs::write(&names[1], &b[..b.len() - 333]).unwrap();
    let o = run(&["data", "check", s(&root)]);
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        out.contains("unknown_name") && out.contains("valve/train/renamed_by_someone.wav"),
        "{out}"
    );
    let corrupt = names[1].strip_prefix(&root).unwrap().to_str().unwrap();
    assert!(
        out.lines()
            .any(|l| l.contains("unreadable") && l.contains(corrupt) && l.contains("truncated")),
        "{out}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn synth_is_deterministic_for_a_seed() {
    let d = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        run(&[
            "synth",
            "--out",
            s(out),
            "--devices",
            "bearing",
            "--sections",
            "1",
            "--train",
            "2",
            "--test",
            "1",
            "--seconds",
            "0.3",
        ])
    };
    assert!(args(&d.path().join("a")).status.success());
    assert!(args(&d.path().join("b")).status.success());
    let rel = "bearing/test/section_00_target_test_anomaly_0000";
    let pick = |root: PathBuf| {
        let dir = root.join("bearing/test");
        let f = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_str().unwrap().contains(rel))
            .unwrap();
        std::fs::read(f).unwrap()
    };
    assert_eq!(pick(d.path().join("a")), pick(d.path().join("b")));
}

#[test]
fn bench_features_prints_clips_per_second_as_json() {
    let o = run(&[
        "bench",
        "features",
        "--clips",
        "4",
        "--seconds",
        "0.5",
        "--threads",
        "1",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "logmel_single_thread_clips_per_s",
        "logmel_parallel_clips_per_s",
        "decode_logmel_parallel_clips_per_s",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {out}");
    }
    assert_eq!(v["threads_used"], 1);
}

#[test]
fn every_flag_of_the_audio_subcommands_has_help_text() {
    for (args, flags) in [
        (vec!["features", "--help"], vec!["--out", "--threads"]),
        (
            vec!["data", "check", "--help"],
            vec!["--layout", "--rate", "--headers-only", "--json"],
        ),
        (
            vec!["synth", "--help"],
            vec![
                "--devices",
                "--sections",
                "--train",
                "--test",
                "--seconds",
                "--seed",
            ],
        ),
        (
            vec!["bench", "features", "--help"],
            vec!["--clips", "--json", "--write-clips"],
        ),
    ] {
        let o = run(&args);
        let (out, _) = text(&o);
        assert!(o.status.success());
        for f in flags {
            let line = out
                .lines()
                .find(|l| l.trim_start().starts_with(f))
                .unwrap_or_else(|| panic!("{f} missing: {out}"));
            // Help text either follows on the flag's line or on the next line.
            let idx = out.lines().position(|l| l == line).unwrap();
            let next = out.lines().nth(idx + 1).unwrap_or("");
            assert!(
                line.split_whitespace().count() > 2 || !next.trim().is_empty(),
                "{f} has no help: {out}"
            );
        }
    }
}

#[test]
fn a_bad_layout_name_is_rejected_with_the_allowed_values() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["data", "check", s(d.path()), "--layout", "dcase1999"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("dcase2021") && err.contains("mimii"),
        "{err}"
    );
}
