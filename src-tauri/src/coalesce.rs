//! Batch events on their way to the page.
//!
//! Every message on a Tauri channel is one script the webview runs on its main thread; a
//! batch of 10 000 small images sends about 30 000 events, which as single messages keep
//! that thread too busy to draw. Sent in groups a few milliseconds apart, the page's cost
//! per event stays small and it keeps drawing; the delay is shorter than a frame.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long the first event of a quiet spell waits for others to join it.
pub const WINDOW: Duration = Duration::from_millis(16);

/// The most events in one group (bounds one message's size).
pub const MAX_GROUP: usize = 1024;

/// A function that forwards each value to `send`, in order, grouped: a value waits at most
/// `window` for more, and a group never holds more than [`MAX_GROUP`]. The forwarding
/// thread ends when the returned function is dropped (after sending what it holds).
pub fn coalesce<T: Send + 'static>(
    window: Duration,
    send: impl Fn(Vec<T>) + Send + Sync + 'static,
) -> Arc<dyn Fn(T) + Send + Sync> {
    let send = Arc::new(send);
    let (tx, rx) = mpsc::channel::<T>();
    let forward = send.clone();
    let spawned = std::thread::Builder::new()
        .name("prism-events".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                let deadline = Instant::now() + window;
                while group.len() < MAX_GROUP {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(v) => group.push(v),
                        Err(_) => break,
                    }
                }
                forward(group);
            }
        });
    match spawned {
        Ok(_) => Arc::new(move |v| {
            // The thread only ends once every sender is gone: sending cannot fail here.
            let _ = tx.send(v);
        }),
        // No thread to spare: one value per message, as without grouping.
        Err(_) => Arc::new(move |v| send(vec![v])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    fn collect(window: Duration) -> (Arc<dyn Fn(u32) + Send + Sync>, Groups) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        (coalesce(window, move |v| g.lock().unwrap().push(v)), got)
    }

    fn wait_for(got: &Mutex<Vec<Vec<u32>>>, n: usize) -> Vec<Vec<u32>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let g = got.lock().unwrap().clone();
            if g.iter().map(Vec::len).sum::<usize>() >= n || Instant::now() > deadline {
                return g;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_burst_arrives_whole_in_order_in_few_groups() {
        let (sink, got) = collect(Duration::from_millis(50));
        for i in 0..5000 {
            sink(i);
        }
        let groups = wait_for(&got, 5000);
        let all: Vec<u32> = groups.concat();
        assert_eq!(all, (0..5000).collect::<Vec<_>>());
        assert!(groups.iter().all(|g| g.len() <= MAX_GROUP));
        assert!(groups.len() < 50, "{} groups for 5000 events", groups.len());
    }

    #[test]
    fn a_lone_event_is_not_held_back_and_dropping_flushes() {
        let (sink, got) = collect(Duration::from_millis(20));
        sink(7);
        assert_eq!(wait_for(&got, 1), vec![vec![7]]);
        sink(8);
        drop(sink);
        assert_eq!(wait_for(&got, 2), vec![vec![7], vec![8]]);
    }
}
