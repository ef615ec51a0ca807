//! The machine's own timing noise: a bare thread that sleeps, then spins, to equidistant deadlines exactly as the
//! driver's scheduler thread does, but sends nothing. Its lateness is a floor under the loader's send lag at that
//! moment on this machine (other processes, the hypervisor), which the loader cannot go below.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use loader::driver::SPIN_WINDOW;

use super::replay::Dist;

/// Runs the bare timer loop at `rate` per second for `secs` seconds on its own thread; its lateness, µs.
pub fn measure(rate: f64, secs: f64) -> anyhow::Result<Dist> {
    let thread = std::thread::Builder::new().name("timer-baseline".into()).spawn(move || timer_loop(rate, secs))?;
    thread.join().map_err(|_| anyhow::anyhow!("the timer baseline thread panicked"))
}

fn timer_loop(rate: f64, secs: f64) -> Dist {
    let mut lateness = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
    let start = Instant::now() + Duration::from_millis(10);
    for i in 0..(rate * secs).round() as u64 {
        let deadline = start + Duration::from_secs_f64(i as f64 / rate);
        sleep_then_spin(deadline);
        let late = Instant::now().saturating_duration_since(deadline).as_micros();
        lateness.saturating_record(u64::try_from(late).unwrap_or(u64::MAX));
    }
    Dist::of(&lateness)
}

/// The driver's wait: sleep until [`SPIN_WINDOW`] before the deadline, then spin.
fn sleep_then_spin(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN_WINDOW {
            std::thread::sleep(left - SPIN_WINDOW);
        } else {
            std::hint::spin_loop();
        }
    }
}
