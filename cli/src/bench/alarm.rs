//! A precise timer for the harness's own threads: one OS thread keeps every deadline and wakes
//! each waiter within microseconds of it (tokio's timer ticks in whole milliseconds).
//!
//! The harness's buyers used to end each answer's wait on a blocking-pool thread of its own:
//! three thread wake-ups an answer, 30 answers a ping, on the same two cores as the Gavel
//! server under test, whose dispatch of the next ping's calls that CPU slowed. One thread
//! holding all the deadlines wakes once an answer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

struct Alarm {
    at: Instant,
    ring: oneshot::Sender<()>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct Clock {
    alarms: Mutex<BinaryHeap<Reverse<Alarm>>>,
    changed: Condvar,
}

fn clock() -> &'static Clock {
    static CLOCK: OnceLock<&'static Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock: &'static Clock = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("bench-alarms".to_owned())
            .spawn(move || ring_alarms(clock))
            .expect("the harness's timer thread");
        clock
    })
}

/// Waits until `at`, give or take the few microseconds a sleeping thread takes to wake.
pub(super) async fn sleep_until(at: Instant) {
    if at <= Instant::now() {
        return;
    }
    let (ring, rung) = oneshot::channel();
    let clock = clock();
    let earliest = {
        let mut alarms = clock.alarms.lock().expect("the alarms' lock");
        alarms.push(Reverse(Alarm { at, ring }));
        alarms.peek().is_some_and(|first| first.0.at == at)
    };
    // The thread sleeps until its earliest alarm: woken only when this one comes first.
    if earliest {
        clock.changed.notify_one();
    }
    let _ = rung.await;
}

fn ring_alarms(clock: &'static Clock) {
    // Without this, Linux lets a sleeping thread wake up to 50 µs late (its timer slack).
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut alarms = clock.alarms.lock().expect("the alarms' lock");
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while alarms.peek().is_some_and(|first| first.0.at <= now) {
            due.extend(alarms.pop());
        }
        if !due.is_empty() {
            // Rung without the lock (waking a task is a system call), then the clock read again.
            drop(alarms);
            for Reverse(alarm) in due.drain(..) {
                let _ = alarm.ring.send(());
            }
            alarms = clock.alarms.lock().expect("the alarms' lock");
            continue;
        }
        alarms = match alarms.peek() {
            None => clock.changed.wait(alarms).expect("the alarms' lock"),
            Some(first) => {
                let wait = first.0.at.saturating_duration_since(now);
                clock
                    .changed
                    .wait_timeout(alarms, wait)
                    .expect("the alarms' lock")
                    .0
            }
        };
    }
}
