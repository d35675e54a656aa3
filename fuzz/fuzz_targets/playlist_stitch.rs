//! `stitch` of segment lists produced in chunks (packager crate).
//!
//! Properties:
//! - a contiguous list of segments cut into chunks at any points and shuffled stitches
//!   back into exactly the original list (or the first bad duration is named);
//! - leaving out an inner chunk is a `Gap` at its first index; repeating a chunk is an
//!   `Overlap` at its first index (tiling is checked before durations);
//! - on arbitrary chunks `stitch` never panics, and what it accepts is every input
//!   segment, sorted, with consecutive indexes and playable durations.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lectern_packager::{MAX_SEGMENT_SECS, MIN_SEGMENT_SECS, PackagerError, SegmentFacts, stitch};

#[derive(Debug, Arbitrary)]
struct Seg {
    index: u64,
    duration: f64,
    bytes: u64,
}

#[derive(Debug, Arbitrary)]
struct Input {
    first: u64,
    segments: Vec<(f64, u64)>,
    cuts: Vec<u16>,
    order: Vec<u16>,
    drop: u16,
    repeat: u16,
    arbitrary_chunks: Vec<Vec<Seg>>,
}

fn playable(d: f64) -> bool {
    d.is_finite() && (MIN_SEGMENT_SECS..=MAX_SEGMENT_SECS).contains(&d)
}

fuzz_target!(|input: Input| {
    // The original list, on the grid from `first` (kept so that the last index fits).
    let n = input.segments.len();
    let first = input.first.min(u64::MAX - (n as u64).saturating_sub(1));
    let original: Vec<SegmentFacts> = input
        .segments
        .iter()
        .enumerate()
        .map(|(i, &(duration, bytes))| SegmentFacts { index: first + i as u64, duration, bytes })
        .collect();

    // Cut into chunks and shuffle them.
    let mut cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c) % (n + 1)).collect();
    cuts.extend([0, n]);
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks: Vec<Vec<SegmentFacts>> = cuts.windows(2).map(|w| original[w[0]..w[1]].to_vec()).collect();
    let in_order = chunks.clone();
    for (i, &o) in input.order.iter().enumerate().take(chunks.len()) {
        let j = i + usize::from(o) % (chunks.len() - i);
        chunks.swap(i, j);
    }

    let result = stitch(&chunks);
    match original.iter().find(|s| !playable(s.duration)) {
        _ if original.is_empty() => assert_eq!(result, Err(PackagerError::Empty)),
        None => assert_eq!(result.as_ref(), Ok(&original), "chunks {chunks:?}"),
        Some(bad) => assert!(
            matches!(result, Err(PackagerError::BadDuration { index, .. }) if index == bad.index),
            "{result:?}, first bad segment {bad:?}"
        ),
    }

    // An inner chunk left out.
    if in_order.len() >= 3 {
        let k = 1 + usize::from(input.drop) % (in_order.len() - 2);
        let missing = in_order[k][0].index;
        let rest: Vec<Vec<SegmentFacts>> =
            in_order.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, c)| c.clone()).collect();
        assert_eq!(stitch(&rest), Err(PackagerError::Gap(missing)));
    }
    // A chunk repeated.
    if !in_order.is_empty() {
        let k = usize::from(input.repeat) % in_order.len();
        let mut twice = chunks.clone();
        twice.push(in_order[k].clone());
        assert_eq!(stitch(&twice), Err(PackagerError::Overlap(in_order[k][0].index)));
    }

    // Arbitrary chunks.
    let arbitrary: Vec<Vec<SegmentFacts>> = input
        .arbitrary_chunks
        .iter()
        .map(|c| c.iter().map(|s| SegmentFacts { index: s.index, duration: s.duration, bytes: s.bytes }).collect())
        .collect();
    if let Ok(all) = stitch(&arbitrary) {
        let total: usize = arbitrary.iter().map(Vec::len).sum();
        assert_eq!(all.len(), total);
        for pair in all.windows(2) {
            assert_eq!(pair[0].index.checked_add(1), Some(pair[1].index), "{all:?}");
        }
        assert!(all.iter().all(|s| playable(s.duration)));
    }
});
