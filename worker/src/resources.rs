//! What this machine (or container) offers: cpu from the scheduler's view of available parallelism (which honours
//! cgroup quotas), memory from the cgroup limit or /proc/meminfo, gpus from `nvidia-smi -L`.

use burst_proto::v1::Resources;

pub fn detect() -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    Resources { cpu_millis: cores * 1000, memory_bytes: memory_bytes(), gpus: gpus() }
}

fn memory_bytes() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| parse_meminfo_total(&text)).unwrap_or(0);
    // A container's limit is what it really has; "max" or a huge number means no limit.
    let limit = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok());
    match limit {
        Some(limit) if total == 0 || limit < total => limit,
        _ => total,
    }
}

fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The GPUs `nvidia-smi -L` lists, at most as many as the worker's own `CUDA_VISIBLE_DEVICES` names when it is
/// set (see [`crate::gpus`]).
fn gpus() -> u32 {
    let listed = match std::process::Command::new("nvidia-smi").arg("-L").output() {
        Ok(out) if out.status.success() => count_gpus(&String::from_utf8_lossy(&out.stdout)),
        _ => 0,
    };
    let inherited = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    listed.min(inherited.map_or(u32::MAX, |list| crate::gpus::visible(&list).len() as u32))
}

fn count_gpus(listing: &str) -> u32 {
    listing.lines().filter(|l| l.starts_with("GPU ")).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total(text), Some(24576000 * 1024));
    }

    #[test]
    fn gpus_are_counted_from_nvidia_smi_listing() {
        let listing = "GPU 0: NVIDIA A100 (UUID: GPU-1)\nGPU 1: NVIDIA A100 (UUID: GPU-2)\n";
        assert_eq!(count_gpus(listing), 2);
        assert_eq!(count_gpus(""), 0);
    }

    #[test]
    fn detection_finds_at_least_one_core_and_some_memory() {
        let r = detect();
        assert!(r.cpu_millis >= 1000);
        assert!(r.memory_bytes > 0);
    }
}
