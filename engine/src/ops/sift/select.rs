//! OpenCV's `KeyPointsFilter::removeDuplicatedSorted` and `retainBest`, in the order
//! OpenCV leaves the keypoints.
//!
//! `retainBest` is `std::nth_element` on the response followed by `std::partition`, so the
//! order of the kept keypoints is whatever libstdc++'s introselect leaves; the OpenCV
//! wheels are built with GCC, so this module follows libstdc++ (`__introselect`,
//! `__move_median_to_first`, `__unguarded_partition`, `__heap_select`,
//! `__insertion_sort`, bidirectional `__partition`) step for step.

use std::cmp::Ordering;

/// A keypoint before the final half-scaling, with its descriptor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Found {
    /// Column in the doubled image.
    pub x: f32,
    /// Row in the doubled image.
    pub y: f32,
    /// Diameter in the doubled image.
    pub size: f32,
    /// Degrees.
    pub angle: f32,
    /// `|contrast|`.
    pub response: f32,
    /// `octave + (layer << 8) + (round((xi + 0.5)·255) << 16)`, octave counted from 0.
    pub octave: i32,
    /// The 128 descriptor bytes.
    pub desc: [u8; 128],
}

/// `KeyPoint12_LessThan`: x, y ascending, size descending, angle ascending, response
/// descending, octave descending (class ids are all -1).
fn less(a: &Found, b: &Found) -> bool {
    if a.x != b.x {
        return a.x < b.x;
    }
    if a.y != b.y {
        return a.y < b.y;
    }
    if a.size != b.size {
        return a.size > b.size;
    }
    if a.angle != b.angle {
        return a.angle < b.angle;
    }
    if a.response != b.response {
        return a.response > b.response;
    }
    a.octave > b.octave
}

/// Sorts and drops keypoints equal in position, size and angle to the previous one.
pub(crate) fn remove_duplicated_sorted(kps: &mut Vec<Found>) {
    if kps.len() < 2 {
        return;
    }
    // Elements equal under `less` are identical in every field that matters, so a stable
    // sort gives the same sequence std::sort would.
    kps.sort_by(|a, b| {
        if less(a, b) {
            Ordering::Less
        } else if less(b, a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    kps.dedup_by(|b, a| a.x == b.x && a.y == b.y && a.size == b.size && a.angle == b.angle);
}

/// Keeps the `n` strongest by response, plus any tied with the n-th, as OpenCV does.
pub(crate) fn retain_best(kps: &mut Vec<Found>, n: usize) {
    if kps.len() <= n {
        return;
    }
    if n == 0 {
        kps.clear();
        return;
    }
    let greater = |a: &Found, b: &Found| a.response > b.response;
    nth_element(kps, n - 1, &greater);
    let ambiguous = kps[n - 1].response;
    let end = n + partition(&mut kps[n..], |k| k.response >= ambiguous);
    kps.truncate(end);
}

/// `std::partition` (bidirectional version): returns the count satisfying `pred`.
fn partition<T>(v: &mut [T], pred: impl Fn(&T) -> bool) -> usize {
    let (mut first, mut last) = (0usize, v.len());
    loop {
        loop {
            if first == last {
                return first;
            }
            if pred(&v[first]) {
                first += 1;
            } else {
                break;
            }
        }
        last -= 1;
        loop {
            if first == last {
                return first;
            }
            if !pred(&v[last]) {
                last -= 1;
            } else {
                break;
            }
        }
        v.swap(first, last);
        first += 1;
    }
}

/// `std::nth_element` as libstdc++ implements it.
fn nth_element<T: Clone>(v: &mut [T], nth: usize, comp: &impl Fn(&T, &T) -> bool) {
    if v.is_empty() || nth == v.len() {
        return;
    }
    let depth = 2 * (usize::BITS - 1 - v.len().leading_zeros()) as usize;
    introselect(v, 0, nth, v.len(), depth, comp);
}

fn introselect<T: Clone>(
    v: &mut [T],
    mut first: usize,
    nth: usize,
    mut last: usize,
    mut depth: usize,
    comp: &impl Fn(&T, &T) -> bool,
) {
    while last - first > 3 {
        if depth == 0 {
            heap_select(v, first, nth + 1, last, comp);
            v.swap(first, nth);
            return;
        }
        depth -= 1;
        let cut = partition_pivot(v, first, last, comp);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(v, first, last, comp);
}

fn partition_pivot<T>(
    v: &mut [T],
    first: usize,
    last: usize,
    comp: &impl Fn(&T, &T) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, comp);
    unguarded_partition(v, first + 1, last, first, comp)
}

fn move_median_to_first<T>(
    v: &mut [T],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    comp: &impl Fn(&T, &T) -> bool,
) {
    let pick = if comp(&v[a], &v[b]) {
        if comp(&v[b], &v[c]) {
            b
        } else if comp(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if comp(&v[a], &v[c]) {
        a
    } else if comp(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, pick);
}

fn unguarded_partition<T>(
    v: &mut [T],
    mut first: usize,
    mut last: usize,
    pivot: usize,
    comp: &impl Fn(&T, &T) -> bool,
) -> usize {
    loop {
        while comp(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while comp(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn insertion_sort<T: Clone>(
    v: &mut [T],
    first: usize,
    last: usize,
    comp: &impl Fn(&T, &T) -> bool,
) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        if comp(&v[i], &v[first]) {
            // Move v[i] to the front, shifting first..i right by one.
            v[first..=i].rotate_right(1);
        } else {
            let val = v[i].clone();
            let mut hole = i;
            while comp(&val, &v[hole - 1]) {
                v[hole] = v[hole - 1].clone();
                hole -= 1;
            }
            v[hole] = val;
        }
    }
}

fn heap_select<T: Clone>(
    v: &mut [T],
    first: usize,
    middle: usize,
    last: usize,
    comp: &impl Fn(&T, &T) -> bool,
) {
    let heap = &mut v[first..last];
    let len = middle - first;
    make_heap(heap, len, comp);
    for i in len..heap.len() {
        if comp(&heap[i], &heap[0]) {
            // __pop_heap(first, middle, i): the top goes to i, i's value sifts in.
            let value = heap[i].clone();
            heap[i] = heap[0].clone();
            adjust_heap(heap, 0, len, value, comp);
        }
    }
}

fn make_heap<T: Clone>(h: &mut [T], len: usize, comp: &impl Fn(&T, &T) -> bool) {
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = h[parent].clone();
        adjust_heap(h, parent, len, value, comp);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

fn adjust_heap<T: Clone>(
    h: &mut [T],
    mut hole: usize,
    len: usize,
    value: T,
    comp: &impl Fn(&T, &T) -> bool,
) {
    let top = hole;
    let mut child = hole;
    while child < (len.saturating_sub(1)) / 2 {
        child = 2 * (child + 1);
        if comp(&h[child], &h[child - 1]) {
            child -= 1;
        }
        h[hole] = h[child].clone();
        hole = child;
    }
    if len & 1 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        h[hole] = h[child - 1].clone();
        hole = child - 1;
    }
    // __push_heap(first, hole, top, value)
    while hole > top {
        let parent = (hole - 1) / 2;
        if !comp(&h[parent], &value) {
            break;
        }
        h[hole] = h[parent].clone();
        hole = parent;
    }
    h[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(x: f32, response: f32) -> Found {
        Found {
            x,
            y: 0.0,
            size: 2.0,
            angle: 10.0,
            response,
            octave: 0,
            desc: [0; 128],
        }
    }

    #[test]
    fn duplicates_go_and_order_is_by_position() {
        let mut v = vec![kp(3.0, 0.1), kp(1.0, 0.2), kp(3.0, 0.3), kp(2.0, 0.1)];
        remove_duplicated_sorted(&mut v);
        let xs: Vec<f32> = v.iter().map(|k| k.x).collect();
        assert_eq!(xs, [1.0, 2.0, 3.0]);
        // Of the two at x = 3 the stronger sorts first and is kept.
        assert_eq!(v[2].response, 0.3);
    }

    #[test]
    fn retain_best_keeps_the_strongest_and_ties() {
        let mut v: Vec<Found> = [5.0, 1.0, 4.0, 2.0, 4.0, 3.0, 0.5, 4.0]
            .iter()
            .enumerate()
            .map(|(i, &r)| kp(i as f32, r))
            .collect();
        retain_best(&mut v, 2);
        let mut r: Vec<f32> = v.iter().map(|k| k.response).collect();
        r.sort_by(|a, b| b.partial_cmp(a).unwrap());
        // The 2nd strongest is 4.0 and two more tie with it.
        assert_eq!(r, [5.0, 4.0, 4.0, 4.0]);
    }

    #[test]
    fn nth_element_places_the_nth_and_partitions() {
        // A deterministic shuffle, long enough to exercise partitioning and heap select.
        let mut v: Vec<i64> = (0..500).map(|i| (i * 7919) % 503).collect();
        let mut sorted = v.clone();
        sorted.sort();
        for nth in [0, 1, 17, 250, 498, 499] {
            let mut w = v.clone();
            nth_element(&mut w, nth, &|a: &i64, b: &i64| a < b);
            assert_eq!(w[nth], sorted[nth]);
            assert!(w[..nth].iter().all(|&x| x <= w[nth]));
            assert!(w[nth + 1..].iter().all(|&x| x >= w[nth]));
        }
        heap_select(&mut v, 0, 10, 500, &|a: &i64, b: &i64| a < b);
        let mut top: Vec<i64> = v[..10].to_vec();
        top.sort();
        assert_eq!(top, sorted[..10]);
    }
}
