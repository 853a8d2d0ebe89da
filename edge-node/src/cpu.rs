//! The CPU this process may use: its cgroup's CFS quota, in cores, and a
//! clock of the CPU time the calling thread has used.
//!
//! A node in a container with a CPU limit (Kubernetes' `limits.cpu`, the
//! testbed's `--cpu`, systemd's `CPUQuota=`) gets that share of the
//! machine's time however many cores it sees, and runs in bursts: the whole
//! machine for part of each period, then nothing. Its capacity is the quota
//! over the CPU time a frame takes, not the cores over the wall-clock time
//! of a few frames, which lands anywhere between the two depending on
//! where the bursts fall.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// CPU time the calling thread has used so far.
pub fn thread_cpu() -> Duration {
    clock(rustix::time::ClockId::ThreadCPUTime)
}

/// CPU time the whole process (every thread) has used so far.
pub fn process_cpu() -> Duration {
    clock(rustix::time::ClockId::ProcessCPUTime)
}

fn clock(id: rustix::time::ClockId) -> Duration {
    let t = rustix::time::clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Cores this process may use by its cgroups' CFS quotas (cgroup v2
/// `cpu.max`, v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`), the tightest
/// of its cgroup and every cgroup above it; `None` when nothing limits it or
/// it cannot be read.
pub fn quota_cores() -> Option<f64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    quota_in(&cgroups, &mounts)
}

/// [`quota_cores`] from the text of `/proc/self/cgroup` and
/// `/proc/self/mountinfo`.
fn quota_in(cgroups: &str, mountinfo: &str) -> Option<f64> {
    let mut best: Option<f64> = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let v2 = id == "0" && controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == "cpu") {
            continue;
        }
        let Some(dir) = cgroup_dir(mountinfo, v2, path) else {
            continue;
        };
        if let Some(q) = limit_along(&dir.0, &dir.1, v2) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    }
    best
}

/// The directory of cgroup `path` and its hierarchy's mount point: from the
/// cgroup2 mount (`v2`) or the v1 mount carrying the `cpu` controller.
fn cgroup_dir(mountinfo: &str, v2: bool, path: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - type source super-options
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let _source = right.next();
        let super_options = right.next().unwrap_or("");
        let ok = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && super_options.split(',').any(|o| o == "cpu")
        };
        if !ok {
            return None;
        }
        let mut left = left.split(' ');
        let root = left.nth(3)?;
        let mount = PathBuf::from(left.next()?);
        // The mount shows the hierarchy from `root` down (a container sees
        // its own cgroup as `/`).
        let rest = if root == "/" {
            path
        } else {
            path.strip_prefix(root)?
        };
        let rest = rest.trim_start_matches('/');
        let dir = if rest.is_empty() {
            mount.clone()
        } else {
            mount.join(rest)
        };
        Some((dir, mount))
    })
}

/// The tightest quota from `dir` up to `mount`, in cores.
fn limit_along(dir: &Path, mount: &Path, v2: bool) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut at = Some(dir);
    while let Some(d) = at {
        if !d.starts_with(mount) {
            break;
        }
        let here = if v2 { v2_limit(d) } else { v1_limit(d) };
        if let Some(q) = here {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
        if d == mount {
            break;
        }
        at = d.parent();
    }
    best
}

/// `cpu.max` of a v2 cgroup: `max PERIOD` (no limit) or `QUOTA PERIOD`, µs.
fn v2_limit(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
    let mut it = text.split_whitespace();
    let quota = it.next()?.parse::<f64>().ok()?;
    let period = it
        .next()
        .map_or(Some(100_000.0), |p| p.parse::<f64>().ok())?;
    cores(quota, period)
}

/// `cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us` of a v1 cgroup.
fn v1_limit(dir: &Path) -> Option<f64> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
    };
    cores(read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)
}

fn cores(quota: f64, period: f64) -> Option<f64> {
    (quota.is_finite() && quota > 0.0 && period.is_finite() && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(file), text).expect("write");
    }

    #[test]
    fn a_v2_quota_is_the_tightest_from_the_cgroup_up() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mount = tmp.path().join("cg2");
        write(&mount, "cpu.max", "max 100000\n");
        write(&mount.join("site"), "cpu.max", "150000 100000\n");
        write(&mount.join("site/node"), "cpu.max", "max 100000\n");
        let mountinfo = format!(
            "30 1 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            mount.display()
        );
        assert_eq!(quota_in("0::/site/node\n", &mountinfo), Some(1.5));
        write(&mount.join("site/node"), "cpu.max", "25000 50000\n");
        assert_eq!(quota_in("0::/site/node\n", &mountinfo), Some(0.5));
        // Unlimited all the way up.
        assert_eq!(quota_in("0::/\n", &mountinfo), None);
        // A container sees its own cgroup as the mount's root.
        let inside = format!(
            "30 1 0:26 /site/node {} rw - cgroup2 cgroup2 rw\n",
            mount.join("site/node").display()
        );
        assert_eq!(quota_in("0::/site/node\n", &inside), Some(0.5));
    }

    #[test]
    fn a_v1_quota_is_read_from_the_hierarchy_with_the_cpu_controller() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cpu = tmp.path().join("cpu");
        let mem = tmp.path().join("memory");
        write(&cpu, "cpu.cfs_quota_us", "-1\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        write(&cpu.join("vtb-edge-1"), "cpu.cfs_quota_us", "90000\n");
        write(&cpu.join("vtb-edge-1"), "cpu.cfs_period_us", "100000\n");
        // A memory hierarchy with quota-looking files is not read.
        write(&mem.join("x"), "cpu.cfs_quota_us", "1000\n");
        write(&mem.join("x"), "cpu.cfs_period_us", "100000\n");
        let mountinfo = format!(
            "25 1 0:21 / {} rw - cgroup cgroup rw,cpu\n\
             26 1 0:22 / {} rw - cgroup cgroup rw,memory\n",
            cpu.display(),
            mem.display()
        );
        let cgroups = "4:memory:/x\n1:cpu:/vtb-edge-1\n0::/\n";
        let q = quota_in(cgroups, &mountinfo).expect("limited");
        assert!((q - 0.9).abs() < 1e-12, "{q}");
        assert_eq!(quota_in("4:memory:/x\n1:cpu:/\n", &mountinfo), None);
    }

    #[test]
    fn unreadable_or_malformed_cgroups_give_no_quota() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mount = tmp.path().join("cg2");
        let mountinfo = format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
        for bad in ["", "max", "-5 100000", "abc 100000", "50000 0", "50000 x"] {
            write(&mount.join("n"), "cpu.max", bad);
            assert_eq!(quota_in("0::/n\n", &mountinfo), None, "{bad:?}");
        }
        // No cgroup2 mount, a path outside the mount's root, junk lines.
        assert_eq!(quota_in("0::/n\n", ""), None);
        let other_root = format!("30 1 0:26 /a {} rw - cgroup2 cgroup2 rw\n", mount.display());
        assert_eq!(quota_in("0::/n\n", &other_root), None);
        assert_eq!(quota_in("junk\n::\n", &mountinfo), None);
    }

    #[test]
    fn the_thread_clock_counts_work_not_sleep() {
        let t0 = thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu() - t0;
        assert!(slept < Duration::from_millis(10), "{slept:?} while asleep");
        // Work moves it (however often the machine takes the core away).
        // Wall-clock first: the thread cannot have worked longer than it ran.
        let start = std::time::Instant::now();
        let t1 = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - t1 < Duration::from_millis(20) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the clock stands still"
            );
            for _ in 0..10_000 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let (worked, ran) = (thread_cpu() - t1, start.elapsed());
        // A virtual machine's clocks tick at their own granularity: allow 1 ms.
        assert!(
            worked <= ran + Duration::from_millis(1),
            "{worked:?} of work in {ran:?}"
        );
        // The process's clock counts this thread's work and another's.
        let p0 = process_cpu();
        let other = std::thread::spawn(|| {
            let t0 = thread_cpu();
            let mut y = 1u64;
            while thread_cpu() - t0 < Duration::from_millis(20) {
                for _ in 0..10_000 {
                    y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                }
            }
            std::hint::black_box(y);
        });
        other.join().expect("joins");
        assert!(process_cpu() - p0 >= Duration::from_millis(20));
    }
}
