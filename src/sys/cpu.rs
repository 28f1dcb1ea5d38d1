//! CPU affinity: which CPUs this process may run on, and pinning a worker thread
//! to one of them (sched_setaffinity(2)).
//!
//! Masks are arrays of `unsigned long`, as the kernel reads and writes them, so
//! the bit of CPU `n` is bit `n % BITS` of word `n / BITS` on every architecture.

use std::io;

use super::error::{context, cvt, invalid_input};

/// Bits in one word of a kernel CPU mask.
const WORD_BITS: usize = libc::c_ulong::BITS as usize;

/// CPU numbers beyond this are refused rather than allocating a huge mask (the
/// kernel's `NR_CPUS` is at most 8192 today).
const MAX_CPUS: usize = 1 << 16;

/// The CPUs whose bits are set in `mask`, ascending.
pub fn cpus_in_mask(mask: &[libc::c_ulong]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .flat_map(|(w, &word)| {
            (0..WORD_BITS)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| w * WORD_BITS + b)
        })
        .collect()
}

/// The CPUs this process may run on (`sched_getaffinity` of the main thread:
/// what `taskset` or the cgroup cpuset allow), ascending. Call it before pinning
/// the main thread, whose mask it reads.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // The main thread's tid is the pid.
    let pid = libc::pid_t::try_from(std::process::id())
        .map_err(|_| invalid_input("process id out of range"))?;
    let mut words = size_of::<libc::cpu_set_t>() / size_of::<libc::c_ulong>();
    loop {
        let mut mask: Vec<libc::c_ulong> = vec![0; words];
        // SAFETY: `mask` is writable for `words * size_of::<c_ulong>()` bytes, the
        // length passed, and suitably aligned for the kernel's unsigned longs; the
        // kernel writes at most that many bytes.
        let ret = cvt(unsafe {
            libc::sched_getaffinity(
                pid,
                words * size_of::<libc::c_ulong>(),
                mask.as_mut_ptr().cast::<libc::cpu_set_t>(),
            )
        });
        let Err(err) = ret else {
            return Ok(cpus_in_mask(&mask));
        };
        // EINVAL: the kernel's mask is larger than ours (more than 1024 CPUs).
        if err.raw_os_error() == Some(libc::EINVAL) && words * WORD_BITS < MAX_CPUS {
            words *= 2;
            continue;
        }
        return Err(context(err, "sched_getaffinity"));
    }
}

/// Pins the calling thread to `cpu` (`sched_setaffinity(0, …)`, which acts on
/// the calling thread only).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= MAX_CPUS {
        return Err(invalid_input(format!("cpu {cpu} is out of range")));
    }
    let mut mask: Vec<libc::c_ulong> = vec![0; cpu / WORD_BITS + 1];
    mask[cpu / WORD_BITS] |= 1 << (cpu % WORD_BITS);
    // SAFETY: the kernel reads `mask.len() * size_of::<c_ulong>()` bytes, the
    // length passed, from `mask`, which lives for the whole call.
    cvt(unsafe {
        libc::sched_setaffinity(
            0,
            mask.len() * size_of::<libc::c_ulong>(),
            mask.as_ptr().cast::<libc::cpu_set_t>(),
        )
    })
    .map_err(|e| {
        context(
            e,
            format!("sched_setaffinity to cpu {cpu} (is it online and allowed?)"),
        )
    })?;
    Ok(())
}

/// The CPU the calling thread is running on now (`sched_getcpu`).
pub fn current_cpu() -> io::Result<usize> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = cvt(unsafe { libc::sched_getcpu() }).map_err(|e| context(e, "sched_getcpu"))?;
    usize::try_from(cpu).map_err(|_| io::Error::other(format!("sched_getcpu returned {cpu}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bits_are_cpu_numbers() {
        assert_eq!(cpus_in_mask(&[]), Vec::<usize>::new());
        assert_eq!(cpus_in_mask(&[0b1011]), [0, 1, 3]);
        let mut two_words = vec![0 as libc::c_ulong; 2];
        two_words[1] = 1 << 2;
        two_words[0] = 1 << (WORD_BITS - 1);
        assert_eq!(cpus_in_mask(&two_words), [WORD_BITS - 1, WORD_BITS + 2]);
    }

    #[test]
    fn pin_a_thread_to_each_allowed_cpu() {
        let cpus = allowed_cpus().expect("sched_getaffinity");
        assert!(!cpus.is_empty());
        for cpu in cpus.clone() {
            std::thread::spawn(move || {
                pin_current_thread(cpu).expect("pin to an allowed cpu");
                assert_eq!(current_cpu().expect("sched_getcpu"), cpu);
            })
            .join()
            .expect("pinned thread");
        }
        // Pinning threads leaves the process's mask alone.
        assert_eq!(allowed_cpus().expect("sched_getaffinity"), cpus);
        assert!(pin_current_thread(MAX_CPUS).is_err());
    }
}
