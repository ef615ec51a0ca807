//! `loader schedule` on the real azure-100 sample: a dry run that must be byte-for-byte reproducible.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/azure-100")
}

fn schedule(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loader"))
        .arg("schedule")
        .arg(sample())
        .args(["--start-minute", "600", "--minutes", "3", "--compression", "60", "--warmup-minutes", "1"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run loader")
}

#[test]
fn same_seed_same_bytes_other_seed_other_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.csv"), dir.path().join("b.csv"), dir.path().join("c.csv"));
    for (out, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let run = schedule(out, &["--seed", seed]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let (a, b, c) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), std::fs::read(c).unwrap());
    assert_eq!(a, b, "same seed, same trace, same settings: byte-identical");
    assert_ne!(a, c);

    let text = String::from_utf8(a).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("phase,function,minute,index,intendedOffsetUs,runtimeMs,memoryMib"));
    let rows: Vec<Vec<u64>> = lines.map(|l| l.split(',').map(|c| c.parse().unwrap()).collect()).collect();
    assert!(!rows.is_empty());
    let offsets: Vec<u64> = rows.iter().map(|r| r[4]).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "rows are in send order");
    // Three trace minutes at 60x compression last three seconds; the first minute is warm-up (phase 1).
    assert!(offsets.iter().all(|&o| o < 3_000_000));
    assert!(rows.iter().all(|r| (r[4] < 1_000_000) == (r[0] == 1)), "phase follows the warm-up minute");
}

#[test]
fn bad_settings_fail_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    let run = schedule(&out, &["--iat", "gaussian"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("gaussian"));
    let run = schedule(&out, &["--warmup-minutes", "5"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("warmup"), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn a_cold_start_sweep_schedule_from_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cold.yaml");
    std::fs::write(&config, "workload: { kind: cold-starts, rate: 4, cooldown: 3s, duration: 6s }\n").unwrap();
    let out = dir.path().join("cold.csv");
    let run = Command::new(env!("CARGO_BIN_EXE_loader"))
        .args(["schedule", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run loader");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("24 invocations of 12 functions"));
    let text = std::fs::read_to_string(out).unwrap();
    // Function k mod 12 at k x 250 ms: each function is called once per 3 s.
    let rows: Vec<Vec<u64>> =
        text.lines().skip(1).map(|l| l.split(',').map(|c| c.parse().unwrap()).collect()).collect();
    for (k, row) in rows.iter().enumerate() {
        assert_eq!((row[1], row[4]), (k as u64 % 12, k as u64 * 250_000));
    }
}
