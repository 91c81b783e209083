//! Facts about the machine and the build that are cheap to read, printed with every run so that
//! figures can be compared only with figures from a similar setup.

use std::collections::HashMap;
use std::fs;

/// Reports whether this binary was built without optimisations, which makes every figure
/// worse.
pub fn is_debug_build() -> bool {
    cfg!(debug_assertions)
}

/// Prints the CPU count and model, memory, kernel, load average and build profile.
pub fn print_facts() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    println!("machine");
    println!("  CPUs available:   {cpus}");
    println!(
        "  CPU model:        {}",
        cpu_model().unwrap_or_else(|| "unknown".to_string())
    );
    println!(
        "  memory:           {}",
        memory_total().unwrap_or_else(|| "unknown".to_string())
    );
    println!(
        "  kernel:           {}",
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".to_string())
    );
    println!("  load average:     {}", load_average());
    if is_debug_build() {
        println!("  build profile:    debug");
        println!(
            "  WARNING: this is an unoptimised debug build, so its figures are not \
             representative. Run with `cargo run --release -p velochat-bench --bin webhook-load`."
        );
    } else {
        println!("  build profile:    release");
    }
}

/// Returns the 1, 5 and 15 minute load averages from /proc/loadavg, or `unknown`.
pub fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// How many of the busiest other processes the CPU line names.
const OTHER_PROCESSES_LISTED: usize = 3;

/// CPU time counters of the whole machine and of every process at one moment, in the kernel's
/// clock ticks (USER_HZ) as /proc reports them.
pub struct CpuSample {
    machine_total: u64,
    machine_idle: u64,
    /// utime + stime of each process by id, with its command name.
    processes: HashMap<u32, (String, u64)>,
}

impl CpuSample {
    /// Reads /proc/stat and every /proc/PID/stat, or returns `None` where /proc/stat is
    /// missing, as outside Linux.
    pub fn take() -> Option<CpuSample> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let machine_total = ticks.iter().take(8).sum();
        let machine_idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);

        let mut processes = HashMap::new();
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            // A process may exit between listing and reading, which only drops it.
            if let Some(process) = process_ticks(&entry.path().join("stat")) {
                processes.insert(pid, process);
            }
        }
        Some(CpuSample {
            machine_total,
            machine_idle,
            processes,
        })
    }

    /// Describes the CPU use between `earlier` and this sample in CPUs kept busy on average:
    /// the machine, this process, PostgreSQL, Redis and everything else. The figures are
    /// ratios of tick counts, so they do not depend on the tick rate. A process that exited
    /// in between is left out of its group and counted under everything else, and the
    /// busiest other processes are named.
    pub fn describe_since(&self, earlier: &CpuSample) -> String {
        let total = self.machine_total.saturating_sub(earlier.machine_total);
        let idle = self.machine_idle.saturating_sub(earlier.machine_idle);
        if total == 0 {
            return "not measurable (interval too short)".to_string();
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let ticks_per_cpu = total as f64 / cpus;
        let busy = total.saturating_sub(idle) as f64 / ticks_per_cpu;

        let own_pid = std::process::id();
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        let mut own = 0u64;
        for (pid, (name, ticks)) in &self.processes {
            let before = earlier.processes.get(pid).map_or(0, |(_, ticks)| *ticks);
            let used = ticks.saturating_sub(before);
            if *pid == own_pid {
                own += used;
            } else {
                *by_name.entry(name.as_str()).or_default() += used;
            }
        }
        let share = |ticks: u64| ticks as f64 / ticks_per_cpu;
        let postgres = share(by_name.remove("postgres").unwrap_or(0));
        let redis = share(by_name.remove("redis-server").unwrap_or(0));
        let own = share(own);
        let other = (busy - own - postgres - redis).max(0.0);

        let mut others: Vec<(&str, u64)> = by_name.into_iter().filter(|(_, t)| *t > 0).collect();
        others.sort_by_key(|(_, ticks)| std::cmp::Reverse(*ticks));
        let top_others: Vec<String> = others
            .iter()
            .take(OTHER_PROCESSES_LISTED)
            .map(|(name, ticks)| format!("{name} {:.2}", share(*ticks)))
            .collect();
        format!(
            "{busy:.2} of {cpus} (this process {own:.2}, PostgreSQL {postgres:.2}, \
             Redis {redis:.2}, other {other:.2}: {})",
            top_others.join(", ")
        )
    }
}

/// Reads the command name and utime + stime of one /proc/PID/stat file.
fn process_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let stat = fs::read_to_string(path).ok()?;
    // The command name is in brackets and may contain spaces, so fields are counted after the
    // closing bracket, where field 3 (state) comes first and utime and stime are fields 14
    // and 15.
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Prints the CPU use since `start` as one indented line, or nothing when /proc is missing.
pub fn print_cpu_since(start: &Option<CpuSample>) {
    if let (Some(start), Some(now)) = (start, CpuSample::take()) {
        println!("  CPUs busy on average:  {}", now.describe_since(start));
    }
}

fn cpu_model() -> Option<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

fn memory_total() -> Option<String> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}
