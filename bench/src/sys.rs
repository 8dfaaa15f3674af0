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
    ticks(stat_cpu_ticks(&stat))
}

/// User + system CPU time used so far by every live process whose command name (`comm`, at
/// most 15 bytes) is `name`, summed: a PostgreSQL server's backends, say. A process that
/// exited is not counted.
pub fn cpu_time_named(name: &str) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let total = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| stat_comm(stat) == Some(name))
        .map(|stat| stat_cpu_ticks(&stat))
        .sum();
    ticks(total)
}

/// The command name of a `/proc/<pid>/stat` line (between the first `(` and the last `)`).
fn stat_comm(stat: &str) -> Option<&str> {
    let start = stat.find('(')? + 1;
    let end = stat.rfind(')')?;
    stat.get(start..end)
}

/// utime + stime, in clock ticks, of a `/proc/<pid>/stat` line.
fn stat_cpu_ticks(stat: &str) -> u64 {
    // The command name is in parentheses and may contain spaces: fields count from after it.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum()
}

/// The machine's busy CPU time so far, all cores: every state of `/proc/stat`'s `cpu` line
/// but idle and iowait (steal included: time this box wanted and did not get).
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    ticks(busy_ticks(&stat))
}

fn busy_ticks(proc_stat: &str) -> u64 {
    let Some(line) = proc_stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    line.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / clock_ticks() as f64)
}

/// The CPU that named processes and the whole machine use over a window: where a figure's
/// time goes, per unit of work, and whether the box's cores or a serial path is the limit.
pub struct CpuWindow {
    started: std::time::Instant,
    names: Vec<(&'static str, Duration)>,
    busy: Duration,
}

impl CpuWindow {
    /// Starts the window for the processes named `names` (see [`cpu_time_named`]).
    pub fn start(names: &[&'static str]) -> CpuWindow {
        CpuWindow {
            started: std::time::Instant::now(),
            names: names.iter().map(|&n| (n, cpu_time_named(n))).collect(),
            busy: machine_busy(),
        }
    }

    /// Ends the window.
    pub fn finish(self) -> CpuUse {
        CpuUse {
            wall: self.started.elapsed(),
            by_name: self
                .names
                .into_iter()
                .map(|(n, before)| (n, cpu_time_named(n).saturating_sub(before)))
                .collect(),
            busy: machine_busy().saturating_sub(self.busy),
        }
    }
}

/// What a [`CpuWindow`] measured.
pub struct CpuUse {
    pub wall: Duration,
    pub by_name: Vec<(&'static str, Duration)>,
    /// The whole machine's busy time, every process.
    pub busy: Duration,
}

impl CpuUse {
    /// "per event: catalogd 120 µs, postgres 80 µs, …, the rest 10 µs, the machine 260 µs in
    /// all; it was busy 1.9 of its 2 cores; 10000 events/s at these costs would need 2.60
    /// cores: …" for `done` units of work over the window, against `wanted` a second.
    pub fn describe(&self, done: f64, unit: &str, wanted: f64) -> String {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from) as f64;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / done.max(1.0);
        let mut parts: Vec<String> = self
            .by_name
            .iter()
            .map(|(name, used)| format!("{name} {:.0} µs", per(*used)))
            .collect();
        // Processes that exited before the window's end (a load tool's run), the kernel's
        // own threads and everything else on the box.
        let named: Duration = self.by_name.iter().map(|(_, used)| *used).sum();
        parts.push(format!(
            "the rest {:.0} µs",
            per(self.busy.saturating_sub(named))
        ));
        let in_use = self.busy.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        let needed = wanted * per(self.busy) / 1e6;
        // Both can hold: a serial path stops the rate with cores idle, and the work per unit
        // would still not fit the box at the rate wanted.
        let reached = done / self.wall.as_secs_f64().max(1e-9) >= wanted * 0.95;
        let verdict = match (in_use < cpus * 0.85, needed > cpus * 0.95) {
            _ if reached => "the rate wanted was reached",
            (true, true) => {
                "a serial path stopped it with cores to spare, and the box's cores would \
                 not hold the rate wanted either"
            }
            (true, false) => "a serial path stopped it with cores to spare, not the CPU",
            (false, true) => "the box's cores are the limit",
            (false, false) => "the box was nearly saturated",
        };
        format!(
            "per {unit}: {}, the machine {:.0} µs in all; it was busy {in_use:.2} of its \
             {cpus:.0} cores; {wanted:.0} {unit}s/s at these costs would need {needed:.2} \
             cores: {verdict}",
            parts.join(", "),
            per(self.busy),
        )
    }
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
    fn stat_lines_give_the_command_and_its_cpu() {
        // A command name with a space and a parenthesis; utime 1234, stime 56.
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(stat_comm(stat), Some("a (b) c"));
        assert_eq!(stat_cpu_ticks(stat), 1290);
        // user nice system idle iowait irq softirq steal guest guest_nice
        let proc_stat = "cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 50 1 15 2500 20 2 3 3 0 0\n";
        assert_eq!(busy_ticks(proc_stat), 100 + 2 + 30 + 5 + 6 + 7);
    }

    #[test]
    fn a_cpu_window_sees_this_process_busy() {
        let name = stat_comm(&std::fs::read_to_string("/proc/self/stat").unwrap())
            .unwrap()
            .to_owned();
        let name: &'static str = Box::leak(name.into_boxed_str());
        let window = CpuWindow::start(&[name]);
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let used = window.finish();
        assert!(
            used.by_name[0].1 >= Duration::from_millis(100),
            "{:?}",
            used.by_name
        );
        assert!(used.busy >= used.by_name[0].1 / 2, "{:?}", used.busy);
        assert!(used
            .describe(100.0, "loop", 1000.0)
            .contains(&format!("{name} ")));
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
