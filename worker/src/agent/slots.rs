//! The worker's slots, handed out in the order leases leave the queue, and clearing starts ahead of them while
//! jobs are short.
//!
//! A lease runs only once the controller has confirmed its start (a stale lease is refused there). That answer
//! takes a round trip and a durable write; for a job of a millisecond, waiting for it after the slot frees left
//! the slot idle half the time (w1 as users run it, 2 slots: 1.2-1.4 ms waiting for the answer, 1.3 ms running).
//! So on a worker whose recent jobs were short, the next leases ([`ahead_per_slot`] per slot: enough to cover
//! [`AHEAD_COVERS`] of running, from one to [`MAX_AHEAD_PER_SLOT`]) have their starts confirmed while the slots
//! are still busy, and each runs the moment a slot frees. The controller counts such a lease as running from its
//! confirmation (its start time is then), so it may count up to nine times as many running jobs as the worker has
//! slots, for a few milliseconds. Once jobs are long the worker goes back to confirming a start only when its slot
//! is free, so a job is not shown running while it waits behind long ones. Jobs that turn long while leases wait
//! ahead of the slots are noticed before any of them ends: once every slot has been held longer than a short job
//! takes ([`Slots::stalled`]), jobs count as long, and the runs waiting in line are withdrawn ([`Slots::withdraw`])
//! and their leases given back to the controller, where any worker can take them (no peer can steal a lease
//! whose start is confirmed).
//!
//! Answers to starts confirmed together arrive together; the slots still go to their leases in queue order,
//! because each lease takes its place in the line for a slot as it leaves the queue ([`Slots::line_up`]). A lease
//! whose run is ready waits there with it ([`Ticket::start`]): the slot's last run starts it as it ends, on its own
//! thread, without a round through the async runtime (w1 as users run it, 2 slots, 8 runs each alternating:
//! medians 1,561 -> 1,694 jobs/s, the worker's CPU per job 280 -> 258 µs).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Jobs shorter than this on average have their next starts confirmed ahead of a free slot.
pub const SHORT_JOB: Duration = Duration::from_millis(100);
/// Most leases per slot whose start may be confirmed ahead of it (with runs under 2 ms). One hides the answer's
/// wait only when it is shorter than a run; two hid more of it (w1, 2 slots, 3 runs each in one binary: 809 -> 898
/// jobs/s median); with the deeper queue of short jobs, four more still (w1 as users run it, 2 slots, 4 runs each
/// alternating: 909-964 -> 1,016-1,058 jobs/s); with results waiting for company ([`super::report`]), eight more
/// still at 2 slots (3 runs each alternating: 1,469-1,766 -> 1,649-1,883 jobs/s) and as much at 4.
pub const MAX_AHEAD_PER_SLOT: u32 = 8;

/// How much running the leases confirmed ahead of a slot cover: a report's round trip and its linger, with room
/// to spare (a run of `/bin/true` takes ~1 ms on a busy 2-core machine: eight of them). Longer jobs need fewer
/// leases ahead, and show fewer jobs running before they run.
pub const AHEAD_COVERS: Duration = Duration::from_millis(8);

/// Leases per slot whose start may be confirmed ahead of it after runs of `recent_run`: as many as cover
/// [`AHEAD_COVERS`], rounded up to a power of two (1, 2, 4 or [`MAX_AHEAD_PER_SLOT`]).
pub fn ahead_per_slot(recent_run: Duration) -> u32 {
    let needed = AHEAD_COVERS.as_micros().div_ceil(recent_run.as_micros().max(1));
    (needed.min(u128::from(MAX_AHEAD_PER_SLOT)) as u32).next_power_of_two().min(MAX_AHEAD_PER_SLOT)
}

pub struct Slots {
    count: u32,
    line: Arc<Line>,
    /// Places for leases confirmed ahead of a free slot: [`MAX_AHEAD_PER_SLOT`] per slot, each lease taking
    /// `MAX_AHEAD_PER_SLOT / ahead_per_slot` of them.
    ahead: Arc<Semaphore>,
    /// A moving average of recent run times (µs), each new run weighing 1/8. It starts at the threshold's
    /// eight-fold, so that it takes a few short runs before any start is confirmed ahead.
    recent_run_us: AtomicU64,
}

/// The free slots and the leases waiting for one, first come first served.
#[derive(Default)]
pub struct Line {
    state: Mutex<LineState>,
}

#[derive(Default)]
struct LineState {
    free: u32,
    waiting: VecDeque<Waiter>,
    /// When a slot was last handed to a lease: while none is free, every slot has been held at least since then.
    handed_at: Option<Instant>,
}

/// A lease's place in line.
struct Waiter {
    turn: oneshot::Sender<Slot>,
    place: Arc<Place>,
}

/// A lease's run waiting ready in line for its slot (see [`Ticket::start`]).
pub trait Start: Send {
    /// Starts the run in `slot`, on the thread that freed it; the run holds the slot until it ends, or hands it
    /// back at once (it had nothing to run) for the next in line.
    fn start(self: Box<Self>, slot: Slot) -> Option<Slot>;
    /// Its place was given up before a slot reached it ([`Slots::withdraw`]): it never runs.
    fn withdrawn(self: Box<Self>);
}

/// A closure starts a run; withdrawn, it is dropped.
impl<F: FnOnce(Slot) -> Option<Slot> + Send> Start for F {
    fn start(self: Box<Self>, slot: Slot) -> Option<Slot> {
        (*self)(slot)
    }

    fn withdrawn(self: Box<Self>) {}
}

/// A place in line: where it stands, and the run waiting there for its slot, if it is ready.
#[derive(Default)]
struct Place {
    /// In line, in line with its start confirmed, or out of it (served or given up). Only
    /// [`Slots::confirmed_in_line`] reads it, over the places still in the line, so a place confirmed just as it
    /// leaves the line changes no count.
    stands: std::sync::atomic::AtomicU8,
    /// Set and taken under the line's lock only.
    ready: Mutex<Option<Ready>>,
}

/// A run ready for its slot, and its place ahead of the slots (given back once it has one).
struct Ready {
    start: Box<dyn Start>,
    _ahead: OwnedSemaphorePermit,
}

const IN_LINE: u8 = 0;
const CONFIRMED: u8 = 1;
const SERVED: u8 = 2;

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot now, or a place in line for the next one.
    fn join(self: &Arc<Self>) -> Result<Slot, (oneshot::Receiver<Slot>, Arc<Place>)> {
        let mut state = self.lock();
        if state.free > 0 {
            state.free -= 1;
            state.handed_at = Some(Instant::now());
            return Ok(Slot(Some(self.clone())));
        }
        let (turn, rx) = oneshot::channel();
        let place = Arc::new(Place::default());
        state.waiting.push_back(Waiter { turn, place: place.clone() });
        Err((rx, place))
    }

    /// How long every slot has been held, when none is free: since the last was handed to a lease.
    fn all_held_for(&self) -> Option<Duration> {
        let state = self.lock();
        (state.free == 0).then_some(state.handed_at).flatten().map(|at| at.elapsed())
    }

    /// Takes the runs waiting ready in line out of it, so that they never start, and tells each so.
    fn withdraw(&self) -> usize {
        let mut taken = Vec::new();
        {
            let mut state = self.lock();
            state.waiting.retain(|waiter| match waiter.place.ready().take() {
                Some(ready) => {
                    waiter.place.leave();
                    taken.push(ready);
                    false
                }
                None => true,
            });
        }
        let withdrawn = taken.len();
        for Ready { start, _ahead } in taken {
            start.withdrawn();
        }
        withdrawn
    }
}

impl Place {
    /// Its lease's start was confirmed: it runs as soon as its slot reaches it.
    fn confirm(&self) {
        let _ = self.stands.compare_exchange(IN_LINE, CONFIRMED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// It is out of the line: served, or its run was given up.
    fn leave(&self) {
        self.stands.store(SERVED, Ordering::Relaxed);
    }

    fn ready(&self) -> std::sync::MutexGuard<'_, Option<Ready>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A lease's place in line, held until its slot reaches it or it leaves the line (given up when dropped, unless
/// its run waits there: see [`Ticket::start`]).
pub struct InLine(Option<Arc<Place>>);

impl Drop for InLine {
    fn drop(&mut self) {
        if let Some(place) = &self.0 {
            place.leave();
        }
    }
}

/// One slot, held while its job runs; dropped, it goes to the first lease still waiting in line: if that lease's
/// run is ready, it starts right here, on the thread that freed the slot (the runner of the job that just ended,
/// usually), without a round through the async runtime.
pub struct Slot(Option<Arc<Line>>);

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(line) = self.0.take() else { return };
        let mut state = line.lock();
        while let Some(Waiter { turn, place }) = state.waiting.pop_front() {
            place.leave();
            state.handed_at = Some(Instant::now());
            let slot = Slot(Some(line.clone()));
            let ready = place.ready().take();
            let unused = match ready {
                Some(Ready { start, _ahead }) => {
                    drop(state);
                    let back = start.start(slot);
                    state = line.lock();
                    back
                }
                // Gone: that lease's run was given up.
                None => turn.send(slot).err(),
            };
            match unused {
                Some(mut unused) => unused.0 = None,
                None => return,
            }
        }
        state.free += 1;
    }
}

/// What lets a lease out of the queue: a free slot, or a place ahead of the slots.
pub enum Gate {
    Slot(Slot),
    Ahead(OwnedSemaphorePermit),
}

/// A lease's claim on a slot: the slot itself, or its place in line (and its place ahead, given back once it has
/// the slot).
pub enum Ticket {
    Slot(Slot),
    InLine { line: Arc<Line>, turn: oneshot::Receiver<Slot>, place: InLine, ahead: OwnedSemaphorePermit },
}

impl Ticket {
    /// Whether it holds its slot already (rather than a place in line for one).
    pub fn has_slot(&self) -> bool {
        matches!(self, Ticket::Slot(_))
    }

    /// Its lease's start is confirmed: once it has its slot it runs at once (see [`Slots::confirmed_in_line`]).
    pub fn confirmed(&self) {
        if let Ticket::InLine { place: InLine(Some(place)), .. } = self {
            place.confirm();
        }
    }

    /// Starts the lease's run in its slot: at once if it has the slot, else once the leases in line before this
    /// one have theirs and one frees, on the thread that frees it; unless it is withdrawn first ([`Slots::withdraw`]).
    /// `start` is dropped without either only if the line is gone.
    pub fn start(self, start: Box<dyn Start>) {
        let (line, mut turn, mut place, ahead) = match self {
            Ticket::Slot(slot) => return drop(start.start(slot)),
            Ticket::InLine { line, turn, place, ahead } => (line, turn, place, ahead),
        };
        let Some(waiting) = place.0.take() else { return };
        {
            let _line = line.lock();
            if waiting.stands.load(Ordering::Relaxed) != SERVED {
                *waiting.ready() = Some(Ready { start, _ahead: ahead });
                return;
            }
        }
        // Its turn came already: the slot was sent (under the line's lock, before this looked).
        if let Ok(slot) = turn.try_recv() {
            drop(start.start(slot));
        }
    }
}

impl Slots {
    pub fn new(slots: u32) -> Self {
        Slots {
            count: slots,
            line: Arc::new(Line { state: Mutex::new(LineState { free: slots, ..LineState::default() }) }),
            ahead: Arc::new(Semaphore::new(slots.saturating_mul(MAX_AHEAD_PER_SLOT) as usize)),
            recent_run_us: AtomicU64::new(8 * SHORT_JOB.as_micros() as u64),
        }
    }

    /// Waits for a free slot, or, while recent jobs are short, for a place ahead of the slots. `None` only if
    /// the slots are gone.
    pub async fn gate(&self) -> Option<Gate> {
        if self.short_jobs() {
            let share = MAX_AHEAD_PER_SLOT / ahead_per_slot(self.recent_run());
            let ahead = self.ahead.clone().acquire_many_owned(share).await.ok()?;
            // Jobs may have turned long while it waited (the places freed by a withdrawal, see `stalled`).
            if self.short_jobs() {
                return Some(Gate::Ahead(ahead));
            }
        }
        match self.line.join() {
            Ok(slot) => Some(Gate::Slot(slot)),
            Err((turn, _)) => turn.await.ok().map(Gate::Slot),
        }
    }

    /// A lease that just left the queue through `gate` takes its place in line for a slot: call it in queue
    /// order.
    pub fn line_up(&self, gate: Gate) -> Ticket {
        match gate {
            Gate::Slot(slot) => Ticket::Slot(slot),
            Gate::Ahead(ahead) => match self.line.join() {
                Ok(slot) => Ticket::Slot(slot),
                Err((turn, place)) => {
                    Ticket::InLine { line: self.line.clone(), turn, place: InLine(Some(place)), ahead }
                }
            },
        }
    }

    /// Slots held by a lease (starting or running its job); those confirmed ahead and waiting hold none.
    pub fn in_use(&self) -> u32 {
        self.count.saturating_sub(self.line.lock().free)
    }

    /// Leases at the front of the line whose starts are confirmed: the next this many slots to free run a job at
    /// once. Counted from the front up to the first lease whose start is not confirmed yet (the leases' tasks may
    /// send their starts in another order than they lined up in).
    pub fn confirmed_in_line(&self) -> u32 {
        let state = self.line.lock();
        let mut confirmed = 0;
        for waiter in &state.waiting {
            match waiter.place.stands.load(Ordering::Relaxed) {
                CONFIRMED => confirmed += 1,
                SERVED => {}
                _ => break,
            }
        }
        confirmed
    }

    /// Notes how long a run took.
    pub fn ran(&self, took: Duration) {
        let took = took.as_micros().min(u128::from(u64::MAX / 16)) as u64;
        // Relaxed: an estimate; a lost update between two runs ending at once changes nothing that matters.
        let before = self.recent_run_us.load(Ordering::Relaxed);
        self.recent_run_us.store(before - before / 8 + took / 8, Ordering::Relaxed);
    }

    /// How long recent runs took, on average.
    fn recent_run(&self) -> Duration {
        Duration::from_micros(self.recent_run_us.load(Ordering::Relaxed))
    }

    /// Leases per slot [`Slots::gate`] lets past ahead of a free slot now (`HeartbeatRequest.start_ahead`): the
    /// controller starts that many more with their leases.
    pub fn start_ahead(&self) -> u32 {
        match self.short_jobs() {
            true => ahead_per_slot(self.recent_run()),
            false => 0,
        }
    }

    /// Whether no slot has changed hands for longer than a short job takes while none is free: the leases in line
    /// wait that long at least. Jobs count as long from then on (the leases ahead of the slots were taken for short
    /// ones), until a short run brings the average back down; the long runs' own ends raise it further. A slot
    /// the run loop holds while it waits for a lease counts as held too, but only once jobs count as long already
    /// (before, it waits for a place ahead, not a slot), so that changes nothing.
    pub fn stalled(&self) -> bool {
        if self.line.all_held_for().is_none_or(|held| held < SHORT_JOB) {
            return false;
        }
        self.recent_run_us.fetch_max(SHORT_JOB.as_micros() as u64, Ordering::Relaxed);
        true
    }

    /// Gives up the runs waiting ready in line for a slot: each is told it is withdrawn and never starts (its
    /// lease goes back to the controller). Returns how many.
    pub fn withdraw(&self) -> usize {
        self.line.withdraw()
    }

    /// Whether recent jobs were short enough to confirm starts ahead of a free slot.
    pub fn short_jobs(&self) -> bool {
        self.recent_run_us.load(Ordering::Relaxed) < SHORT_JOB.as_micros() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot `ticket` gets, handed over by [`Ticket::start`] (on whichever thread frees it).
    async fn slot_of(ticket: Ticket) -> Option<Slot> {
        let (tx, rx) = oneshot::channel();
        ticket.start(Box::new(move |slot| {
            let _ = tx.send(slot);
            None
        }));
        rx.await.ok()
    }

    /// Slots after runs of half a millisecond: the most leases wait ahead of each.
    fn short(slots: u32) -> Slots {
        let slots = Slots::new(slots);
        for _ in 0..200 {
            slots.ran(Duration::from_micros(500));
        }
        assert_eq!(ahead_per_slot(slots.recent_run()), MAX_AHEAD_PER_SLOT);
        slots
    }

    #[test]
    fn the_leases_ahead_of_a_slot_cover_a_few_milliseconds_of_runs() {
        let ahead = |us| ahead_per_slot(Duration::from_micros(us));
        assert_eq!([ahead(300), ahead(600), ahead(1_000)], [8, 8, 8]);
        assert_eq!([ahead(1_500), ahead(2_000)], [8, 4]);
        assert_eq!([ahead(3_000), ahead(4_000)], [4, 2]);
        assert_eq!([ahead(5_000), ahead(8_000), ahead(50_000), ahead(0)], [2, 1, 1, 8]);
    }

    #[tokio::test]
    async fn longer_short_jobs_have_fewer_leases_ahead() {
        let slots = Slots::new(1);
        for _ in 0..200 {
            slots.ran(Duration::from_millis(50));
        }
        assert!(slots.short_jobs());
        let _running = slot_of(slots.line_up(slots.gate().await.unwrap())).await.expect("the free slot");
        let _ahead = slots.line_up(slots.gate().await.unwrap());
        let second = tokio::time::timeout(Duration::from_millis(20), slots.gate()).await;
        assert!(second.is_err(), "one lease ahead of a slot of 50 ms jobs");
        assert_eq!(slots.start_ahead(), 1, "what it tells the controller");
    }

    #[tokio::test]
    async fn the_controller_is_told_as_many_leases_ahead_as_the_gate_lets_past() {
        // Two slots of 1 ms jobs: 2 in the slots, 16 in line; the 19th waits.
        let slots = short(2);
        assert_eq!(slots.start_ahead(), MAX_AHEAD_PER_SLOT);
        let mut tickets = Vec::new();
        for _ in 0..2 * (1 + slots.start_ahead()) {
            tickets.push(slots.line_up(slots.gate().await.unwrap()));
        }
        assert!(tokio::time::timeout(Duration::from_millis(20), slots.gate()).await.is_err(), "no place for more");
        // Long jobs: none ahead.
        slots.ran(Duration::from_secs(10));
        assert_eq!(slots.start_ahead(), 0);
        assert_eq!(Slots::new(2).start_ahead(), 0, "nor before any run");
    }

    /// One slot, short jobs: the first lease runs in it, two more wait ahead (`Ticket`s, in line).
    async fn one_busy_slot_and_two_in_line() -> (Slots, Slot, Ticket, Ticket) {
        let slots = short(1);
        let first = slot_of(slots.line_up(slots.gate().await.unwrap())).await.expect("the free slot");
        let second = slots.line_up(slots.gate().await.unwrap());
        let third = slots.line_up(slots.gate().await.unwrap());
        (slots, first, second, third)
    }

    #[test]
    fn starts_are_confirmed_ahead_only_after_some_short_runs_and_no_longer_once_runs_are_long() {
        let slots = Slots::new(2);
        assert!(!slots.short_jobs(), "a new worker knows nothing of its jobs yet");
        let mut short_runs = 0;
        while !slots.short_jobs() {
            slots.ran(Duration::from_millis(1));
            short_runs += 1;
            assert!(short_runs < 100, "short runs never counted");
        }
        assert!(short_runs >= 10, "one short run is not a trend: {short_runs}");
        slots.ran(Duration::from_secs(1));
        assert!(!slots.short_jobs(), "a run ten times the threshold stops it at once");
    }

    #[tokio::test]
    async fn leases_ahead_get_the_slots_in_the_order_they_lined_up_whoever_asks_first() {
        let (slots, first, second, third) = one_busy_slot_and_two_in_line().await;
        assert_eq!(slots.in_use(), 1, "leases waiting ahead hold no slot");
        let mut more = Vec::new();
        for _ in 2..MAX_AHEAD_PER_SLOT {
            more.push(slots.line_up(slots.gate().await.unwrap()));
        }
        let one_too_many = tokio::time::timeout(Duration::from_millis(20), slots.gate()).await;
        assert!(one_too_many.is_err(), "{MAX_AHEAD_PER_SLOT} leases at most wait ahead of one slot");
        // The third asks for its slot before the second does; the second still gets it first.
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let third = tokio::spawn({
            let tx = tx.clone();
            async move {
                let slot = slot_of(third).await;
                tx.send(3).unwrap();
                drop(slot);
            }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move {
            let slot = slot_of(second).await;
            tx.send(2).unwrap();
            drop(slot);
        });
        assert!(order.try_recv().is_err(), "the slot is still busy");
        drop(first);
        let (a, b) = (order.recv().await, order.recv().await);
        assert_eq!((a, b), (Some(2), Some(3)));
        second.await.unwrap();
        third.await.unwrap();
    }

    #[tokio::test]
    async fn confirmed_leases_are_counted_while_they_wait_in_line() {
        let (slots, first, second, third) = one_busy_slot_and_two_in_line().await;
        assert_eq!(slots.confirmed_in_line(), 0, "nothing confirmed yet");
        // A confirmed lease behind one not yet confirmed is not counted: the next slot goes to the one in front.
        third.confirmed();
        assert_eq!(slots.confirmed_in_line(), 0);
        second.confirmed();
        second.confirmed();
        assert_eq!(slots.confirmed_in_line(), 2, "both, each once");
        // The freed slot reaches the second: no longer in line.
        drop(first);
        let slot = slot_of(second).await.expect("its turn");
        assert_eq!(slots.confirmed_in_line(), 1);
        // One confirmed and given up leaves the count at once, before its turn would have come.
        drop(third);
        assert_eq!(slots.confirmed_in_line(), 0);
        drop(slot);
        // Confirmed once its slot reached it (a lease that got a free slot at once): never counted.
        let fourth = slots.line_up(slots.gate().await.unwrap());
        assert!(fourth.has_slot());
        fourth.confirmed();
        assert_eq!(slots.confirmed_in_line(), 0);
        // A place whose slot came before its start was confirmed is not counted either.
        let busy = slot_of(fourth).await.expect("held");
        let fifth = slots.line_up(slots.gate().await.unwrap());
        drop(busy);
        fifth.confirmed();
        let got = slot_of(fifth).await;
        assert!(got.is_some());
        assert_eq!(slots.confirmed_in_line(), 0);
        // A place given up before its start was confirmed does not stop the count behind it.
        let _held = got;
        let (gone, next) = (slots.line_up(slots.gate().await.unwrap()), slots.line_up(slots.gate().await.unwrap()));
        next.confirmed();
        assert_eq!(slots.confirmed_in_line(), 0);
        drop(gone);
        assert_eq!(slots.confirmed_in_line(), 1);
    }

    #[tokio::test]
    async fn a_lease_given_up_in_line_passes_its_turn_to_the_next() {
        let (slots, first, gone, next) = one_busy_slot_and_two_in_line().await;
        drop(gone);
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(5), slot_of(next)).await.expect("its turn");
        assert!(slot.is_some());
        drop(slot);
        assert_eq!(slots.in_use(), 0);
        // With nobody waiting, the slot is free again: a long-jobs gate takes it at once.
        slots.ran(Duration::from_secs(10));
        let again = tokio::time::timeout(Duration::from_secs(5), slots.gate()).await.expect("a free slot");
        assert!(matches!(again, Some(Gate::Slot(_))));
    }

    #[tokio::test]
    async fn ready_runs_start_in_line_order_on_the_thread_that_frees_the_slot() {
        let (slots, first, second, third) = one_busy_slot_and_two_in_line().await;
        let (tx, ran) = std::sync::mpsc::channel();
        for (n, ticket) in [(2, second), (3, third)] {
            let tx = tx.clone();
            ticket.confirmed();
            // Each run hands its slot back at once (as one with nothing to run does).
            ticket.start(Box::new(move |slot| {
                tx.send((n, std::thread::current().id())).unwrap();
                Some(slot)
            }));
        }
        assert!(ran.try_recv().is_err(), "the slot is still busy");
        assert_eq!(slots.confirmed_in_line(), 2, "ready runs in line are still counted");
        // The job in the slot ends on a thread of its own (a runner): both runs start there, one after the other.
        let ender = std::thread::spawn(move || {
            drop(first);
            std::thread::current().id()
        })
        .join()
        .unwrap();
        let (a, b) = (ran.recv().unwrap(), ran.recv().unwrap());
        assert_eq!((a, b), ((2, ender), (3, ender)));
        assert_eq!((slots.in_use(), slots.confirmed_in_line()), (0, 0));
    }

    #[tokio::test]
    async fn a_ready_run_keeps_its_place_ahead_until_its_slot_comes() {
        let slots = short(1);
        let busy = slot_of(slots.line_up(slots.gate().await.unwrap())).await.expect("the free slot");
        let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..MAX_AHEAD_PER_SLOT {
            let tx = tx.clone();
            slots.line_up(slots.gate().await.unwrap()).start(Box::new(move |slot| {
                tx.send(n).unwrap();
                drop(slot);
                None
            }));
        }
        let one_too_many = tokio::time::timeout(Duration::from_millis(20), slots.gate()).await;
        assert!(one_too_many.is_err(), "runs waiting ready still hold their places ahead");
        drop(busy);
        for n in 0..MAX_AHEAD_PER_SLOT {
            assert_eq!(started.recv().await, Some(n));
        }
        let again = tokio::time::timeout(Duration::from_secs(5), slots.gate()).await;
        assert!(again.is_ok(), "places ahead given back once the runs had their slots");
    }

    /// Says whether its run was started or withdrawn.
    struct Probe(std::sync::mpsc::Sender<&'static str>);

    impl Start for Probe {
        fn start(self: Box<Self>, _slot: Slot) -> Option<Slot> {
            self.0.send("started").unwrap();
            None
        }

        fn withdrawn(self: Box<Self>) {
            self.0.send("withdrawn").unwrap();
        }
    }

    #[tokio::test]
    async fn once_every_slot_is_held_past_a_short_job_jobs_count_as_long_and_the_runs_in_line_are_withdrawn() {
        let (slots, first, second, third) = one_busy_slot_and_two_in_line().await;
        let (tx, ran) = std::sync::mpsc::channel();
        second.start(Box::new(Probe(tx)));
        // The slot's run has gone on for as long as a short job takes.
        slots.line.lock().handed_at = Instant::now().checked_sub(SHORT_JOB);
        assert!(slots.stalled());
        assert_eq!((slots.short_jobs(), slots.start_ahead()), (false, 0), "jobs count as long now");
        let ahead = tokio::time::timeout(Duration::from_millis(20), slots.gate()).await;
        assert!(ahead.is_err(), "no more leases ahead of the slot, though the withdrawn ones' places are free");
        assert_eq!(slots.withdraw(), 1, "the run waiting ready; the other's start is not confirmed yet");
        assert_eq!(ran.try_recv(), Ok("withdrawn"));
        drop(first);
        let slot = slot_of(third).await.expect("the slot goes to the next in line");
        assert!(ran.try_recv().is_err(), "the withdrawn run never starts");
        drop(slot);
        assert!(!slots.stalled(), "a slot is free");
    }
}
