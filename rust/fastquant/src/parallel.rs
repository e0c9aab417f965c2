//! The crate's own rayon pool, its size, and how work is split.
//!
//! fastquant keeps a private pool so that `set_num_threads` is real and does not disturb other
//! rayon users in the same process. The size comes from `FASTQUANT_NUM_THREADS`, else the number of
//! CPUs. Work is split into contiguous ranges written into preallocated output; inputs too small to
//! repay a thread hand-off run on the caller's thread.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

struct Pool {
    threads: usize,
    pool: Arc<ThreadPool>,
}

fn pool_slot() -> &'static RwLock<Option<Pool>> {
    static POOL: OnceLock<RwLock<Option<Pool>>> = OnceLock::new();
    POOL.get_or_init(|| RwLock::new(None))
}

fn default_threads() -> usize {
    std::env::var("FASTQUANT_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn build(threads: usize) -> Result<Pool> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("fastquant-{i}"))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {threads} worker threads: {e}")))?;
    Ok(Pool { threads, pool: Arc::new(pool) })
}

/// The pool and its size, built on first use.
fn current() -> Result<(usize, Arc<ThreadPool>)> {
    if let Some(p) = pool_slot().read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok((p.threads, p.pool.clone()));
    }
    let mut slot = pool_slot().write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(build(default_threads())?);
    }
    let p = slot.as_ref().expect("just set");
    Ok((p.threads, p.pool.clone()))
}

/// Number of threads kernels use.
pub fn num_threads() -> usize {
    current().map(|(n, _)| n).unwrap_or(1)
}

/// Sets the number of threads kernels use (at least 1). Calls already running finish on the old
/// pool.
pub fn set_num_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(Error::Invalid("the number of threads must be at least 1".into()));
    }
    if threads > 4096 {
        return Err(Error::Invalid(format!("{threads} threads is more than fastquant allows (4096)")));
    }
    let pool = build(threads)?;
    *pool_slot().write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    Ok(())
}

/// Splits `n_units` units of work (a unit is `in_per_unit` input items and `out_per_unit` output
/// items) into at most one task per thread, none smaller than `min_units_per_task`, and runs
/// `task(first_unit, input, output)` on each piece, in parallel where that pays. Results come back
/// in order.
pub fn split_work<A, B, T, F>(
    input: &[A],
    output: &mut [B],
    in_per_unit: usize,
    out_per_unit: usize,
    min_units_per_task: usize,
    task: F,
) -> Result<Vec<T>>
where
    A: Sync,
    B: Send,
    T: Send,
    F: Fn(usize, &[A], &mut [B]) -> T + Sync,
{
    let n_units = input.len().checked_div(in_per_unit).unwrap_or(0);
    debug_assert_eq!(n_units * in_per_unit, input.len());
    debug_assert_eq!(n_units * out_per_unit, output.len());
    let (threads, pool) = current()?;
    let n_tasks = threads.min(n_units / min_units_per_task.max(1)).max(1);
    if n_tasks == 1 {
        return Ok(vec![task(0, input, output)]);
    }
    let mut pieces = Vec::with_capacity(n_tasks);
    let mut rest_out = output;
    let mut start = 0;
    for t in 0..n_tasks {
        let end = n_units * (t + 1) / n_tasks;
        let (out, tail) = std::mem::take(&mut rest_out).split_at_mut((end - start) * out_per_unit);
        pieces.push((start, &input[start * in_per_unit..end * in_per_unit], out));
        rest_out = tail;
        start = end;
    }
    // Every piece goes to the pool and the caller blocks. Tried: the caller running the first
    // piece itself (`in_place_scope`, with and without a short spin for the others) was slower
    // on this shared 2-core VM (Q4_0 GEMV 4096x14336, 2 threads, median 3.1-4.0 ms vs 1.5 ms):
    // a blocked caller frees its core for a worker, a working one leaves the worker waiting for
    // the other, busy, core.
    Ok(pool.install(|| {
        use rayon::prelude::*;
        pieces.into_par_iter().map(|(first, inp, out)| task(first, inp, out)).collect()
    }))
}

/// Runs `task(state, i)` for every `i < n_tasks` on the crate's pool, in any order. Each worker
/// makes its own `state` with `init` (scratch buffers), so memory grows with the number of
/// threads, not of tasks. One thread, or one task, runs on the caller's thread.
pub fn for_each_task<S, I, F>(n_tasks: usize, init: I, task: F) -> Result<()>
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize) + Sync,
{
    let (threads, pool) = current()?;
    if threads == 1 || n_tasks <= 1 {
        let mut state = init();
        (0..n_tasks).for_each(|i| task(&mut state, i));
        return Ok(());
    }
    // Each worker pulls task indices from a shared counter: uneven tasks (causal attention's
    // query tiles) balance themselves, and each worker's state is made once.
    let next = std::sync::atomic::AtomicUsize::new(0);
    pool.broadcast(|_| {
        let mut state = None;
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n_tasks {
                break;
            }
            task(state.get_or_insert_with(&init), i);
        }
    });
    Ok(())
}
