//! Where the CPU went during a run: the server's and the load generator's own CPU
//! time (from `/proc/<pid>/stat`), PostgreSQL's (every process named `postgres`, for a
//! run on PostgreSQL), and the machine's busy and stolen time (from `/proc/stat`).
//! With two cores, 20,000 events/s leaves 100 µs of CPU per event for everything
//! together; these numbers say how far each side is from that.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

/// CPU time (seconds) a process has used so far: user + system.
fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / ticks_per_second())
}

/// CPU seconds of every process named `postgres` on the machine (the server's
/// backends, its WAL writer, checkpointer and the rest), by pid.
fn postgres_seconds() -> HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim_end() == "postgres")
                .then(|| process_seconds(pid))
                .flatten()
                .map(|s| (pid, s))
        })
        .collect()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The machine's (busy, stolen, all) ticks so far, summed over its CPUs.
fn machine_ticks() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already counted in user.
    let all: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    let steal = *v.get(7)?;
    Some((all - idle - steal, steal, all))
}

/// How long one core takes for a fixed piece of integer work, in ms: the machine's
/// speed at the moment, so that figures from different hours can be put side by side
/// (this shared machine is sometimes 2 to 3 times slower than at other times).
pub fn reference_ms() -> f64 {
    let t = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200_000_000u64 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    std::hint::black_box(x);
    t.elapsed().as_secs_f64() * 1000.0
}

pub struct Sample {
    at: Instant,
    server: Option<f64>,
    generator: Option<f64>,
    /// PostgreSQL's processes, when the run is on PostgreSQL.
    postgres: Option<HashMap<u32, f64>>,
    machine: Option<(f64, f64, f64)>,
}

impl Sample {
    /// The measured process, this one (the load generator), PostgreSQL's processes
    /// if `postgres`, and the machine.
    pub fn take(server_pid: u32, postgres: bool) -> Sample {
        Sample {
            at: Instant::now(),
            server: process_seconds(server_pid),
            generator: process_seconds(std::process::id()),
            postgres: postgres.then(postgres_seconds),
            machine: machine_ticks(),
        }
    }

    /// PostgreSQL's CPU seconds between `self` and `later`: a process found only in
    /// `later` started during the run and counts whole; one that ended during it is
    /// lost (a backend lives as long as its pooled connection, so few do).
    fn postgres_between(&self, later: &Sample) -> Option<f64> {
        let (a, b) = (self.postgres.as_ref()?, later.postgres.as_ref()?);
        Some(
            b.iter()
                .map(|(pid, s)| s - a.get(pid).copied().unwrap_or(0.0))
                .sum(),
        )
    }

    /// What was used between `self` and `later`, for `events` events.
    pub fn until(&self, later: &Sample, events: u64) -> Usage {
        let per_event = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if events > 0 => (b - a) * 1e6 / events as f64,
            _ => f64::NAN,
        };
        let (busy, steal) = match (self.machine, later.machine) {
            (Some((b0, s0, a0)), Some((b1, s1, a1))) if a1 > a0 => {
                ((b1 - b0) / (a1 - a0), (s1 - s0) / (a1 - a0))
            }
            _ => (f64::NAN, f64::NAN),
        };
        let secs = later.at.duration_since(self.at).as_secs_f64();
        Usage {
            server_us: per_event(self.server, later.server),
            generator_us: per_event(self.generator, later.generator),
            postgres_us: per_event(Some(0.0), self.postgres_between(later)),
            server_cores: match (self.server, later.server) {
                (Some(a), Some(b)) if secs > 0.0 => (b - a) / secs,
                _ => f64::NAN,
            },
            busy,
            steal,
        }
    }
}

/// CPU per event and the machine's share busy and stolen, over a run.
pub struct Usage {
    pub server_us: f64,
    pub generator_us: f64,
    /// PostgreSQL's processes together (NaN on a run that is not on PostgreSQL).
    pub postgres_us: f64,
    pub server_cores: f64,
    pub busy: f64,
    pub steal: f64,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU per event: server {:.0} µs ({:.2} cores), ",
            self.server_us, self.server_cores,
        )?;
        if self.postgres_us.is_finite() {
            write!(
                f,
                "PostgreSQL {:.0} µs (server + PostgreSQL {:.0} µs), ",
                self.postgres_us,
                self.server_us + self.postgres_us
            )?;
        }
        write!(
            f,
            "load generator {:.0} µs; machine busy {:.0} %, stolen {:.0} %",
            self.generator_us,
            self.busy * 100.0,
            self.steal * 100.0
        )
    }
}

/// What a process has written so far (`/proc/<pid>/io`): `wchar`, the bytes it passed
/// to `write`/`pwrite`, and `write_bytes`, the bytes it sent to the storage layer.
#[derive(Clone, Copy)]
pub struct Io {
    pub wchar: u64,
    pub write_bytes: u64,
}

impl Io {
    pub fn take(pid: u32) -> Option<Io> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))?
                .trim()
                .parse()
                .ok()
        };
        Some(Io {
            wchar: field("wchar:")?,
            write_bytes: field("write_bytes:")?,
        })
    }

    /// Bytes per event between `self` and `later`: (written by syscalls, to storage).
    pub fn per_event(&self, later: &Io, events: u64) -> (f64, f64) {
        if events == 0 {
            return (f64::NAN, f64::NAN);
        }
        let n = events as f64;
        (
            later.wchar.saturating_sub(self.wchar) as f64 / n,
            later.write_bytes.saturating_sub(self.write_bytes) as f64 / n,
        )
    }
}
