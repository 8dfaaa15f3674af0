//! What the runner reads off the machine: a process's RSS and CPU time from /proc, the
//! versions of everything measured, and percentiles of samples.

use std::process::Command;
use std::time::Duration;

use crate::report::Versions;

/// Resident set size of `pid` in KiB (0 if the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time `pid` has used so far, all threads.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces: fields count from after it.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    // `getconf CLK_TCK` is 100 on every Linux this runs on; ask once anyway.
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        command_output("getconf", &["CLK_TCK"])
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Runs a command and returns its stdout (or stderr, for tools that print versions there).
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Some(String::from_utf8_lossy(&text).trim().to_owned())
}

fn first_line(program: &str, args: &[&str]) -> String {
    command_output(program, args)
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "not found".into())
}

/// git SHA (with `-dirty`), rustc, and the peers' versions.
pub fn versions() -> Versions {
    let sha = command_output("git", &["describe", "--always", "--dirty", "--abbrev=12"])
        .unwrap_or_else(|| "unknown".into());
    Versions(vec![
        ("catalogd".into(), format!("git {sha}")),
        ("rustc".into(), first_line("rustc", &["--version"])),
        (
            "machine".into(),
            format!(
                "{} cores, {} GiB",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                mem_total_gib()
            ),
        ),
        (
            "prometheus-blackbox-exporter".into(),
            first_line("prometheus-blackbox-exporter", &["--version"]),
        ),
        (
            "prometheus".into(),
            first_line("prometheus", &["--version"]),
        ),
        (
            "nats-server".into(),
            first_line("nats-server", &["--version"]),
        ),
        ("postgres".into(), first_line("postgres", &["--version"])),
        ("sqlite (sqlx bundled)".into(), sqlite_version()),
        ("wrk".into(), first_line("wrk", &["--version"])),
    ])
}

fn mem_total_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| (kib + (1 << 19)) >> 20)
}

fn sqlite_version() -> String {
    // libsqlite3-sys is bundled into catalogd: its version is the one measured.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
                .await
                .ok()?;
            sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
                .fetch_one(&mut conn)
                .await
                .ok()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The `q` quantile (0..=1) of `samples`, nearest-rank; sorts in place. NaN if empty.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable_by(|a, b| a.total_cmp(b));
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut s, 0.5), 50.0);
        assert_eq!(quantile(&mut s, 0.99), 99.0);
        assert_eq!(quantile(&mut s, 0.999), 100.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn own_cpu_time_and_rss_are_read() {
        let pid = std::process::id();
        let start = cpu_time(pid);
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(pid) > start);
        assert!(rss_kib(pid) > 0);
    }
}
