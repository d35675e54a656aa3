//! Slide changes: `Detector` watches a lecture's grayscale pictures (about two a
//! second) and tells when the picture settles on a new slide or screen, and when the
//! change to it began. Pure: the pipeline decodes the pictures, `ocr` reads the ones
//! it keeps.
//!
//! It compares a small picture, cell by cell, with the current slide's. Cells that
//! keep moving while the rest stands still (a webcam inset, a video inside a slide, a
//! line being typed) are a dynamic region and do not count. A change counts once
//! enough of the rest differs from the slide (much of the picture, or a part that
//! takes in the title's place at the top) and the picture has then stood still for a
//! second, so a fade is one change, dated from its start. Smaller differences (a
//! cursor, a typed line, a bullet appearing, a terminal's lines pushed up by a few)
//! are taken into the slide's picture silently, so they never add up to a change.

/// A grayscale picture, rows tight (no padding): `luma.len() == width * height`.
#[derive(Debug, Clone)]
pub struct Picture {
    pub pts_secs: f64,
    pub width: u32,
    pub height: u32,
    pub luma: Vec<u8>,
}

/// Box-filtered copy at `width` px wide (height keeps the aspect ratio, at least 1).
/// Used to make the small picture the detector compares.
pub fn shrink(picture: &Picture, width: u32) -> Picture {
    let width = width.max(1);
    let w_in = picture.width as usize;
    // A short buffer is read as the rows it holds, never past its end.
    let h_in = (picture.height as usize).min(picture.luma.len() / w_in.max(1));
    if w_in == 0 || h_in == 0 {
        return Picture {
            pts_secs: picture.pts_secs,
            width,
            height: 1,
            luma: vec![0; width as usize],
        };
    }
    let height = ((h_in as u64 * width as u64 + w_in as u64 / 2) / w_in as u64).max(1) as u32;
    let columns = spans(w_in, width as usize);
    let mut luma = Vec::with_capacity(width as usize * height as usize);
    let mut sums = vec![0u32; columns.len()];
    for (y0, y1) in spans(h_in, height as usize) {
        sums.fill(0);
        for row in picture.luma[y0 * w_in..y1 * w_in].chunks_exact(w_in) {
            for (sum, &(x0, x1)) in sums.iter_mut().zip(&columns) {
                *sum += row[x0..x1].iter().map(|&v| u32::from(v)).sum::<u32>();
            }
        }
        for (sum, &(x0, x1)) in sums.iter().zip(&columns) {
            let n = ((x1 - x0) * (y1 - y0)) as u32;
            luma.push(((sum + n / 2) / n) as u8);
        }
    }
    Picture {
        pts_secs: picture.pts_secs,
        width,
        height,
        luma,
    }
}

/// The source pixels `[start, end)` each of `to` pixels averages (one at least, so
/// it enlarges too).
fn spans(from: usize, to: usize) -> Vec<(usize, usize)> {
    (0..to)
        .map(|i| {
            let start = (i * from / to).min(from - 1);
            let end = ((i + 1) * from / to).clamp(start + 1, from);
            (start, end)
        })
        .collect()
}

/// Pictures are compared at this width: small enough to be cheap (a few ms a picture)
/// and to blur away encoder noise, large enough that text stays text (at 320, two
/// different pages of a terminal blur into the same grey lines).
pub const WORK_WIDTH: u32 = 640;
/// Cells are this many working pixels square: 16 x 9 of them on a 16:9 picture.
const CELL: usize = 40;
/// A cell differs when its mean absolute luma difference exceeds this: a typed word
/// does, a cursor mostly does not.
const CELL_DIFFERS: f32 = 6.0;
/// A cell stirs, for its activity, above this: a talking head stirs its cells at
/// almost every picture, a still slide's cells stay under 1.
const CELL_STIRS: f32 = 3.0;
/// A new slide differs from the last in at least this share of the cells that count:
/// new bullets and a new title do, a typed line or an added bullet do not.
const CHANGE_SHARE: f32 = 0.15;
/// A change short of this share must reach the title band to count: a video's cut
/// inside a slide, a picture appearing or a command's output below a prompt change a
/// part of the screen and leave its top alone.
const WHOLE_SHARE: f32 = 0.4;
/// The title band: the rows of cells whose middle lies in this top share of the
/// picture; a change must touch `TITLE_CELLS` of its cells.
const TITLE_BAND: f32 = 0.25;
const TITLE_CELLS: usize = 2;
/// A picture stands still while at most this many counting cells move (a cursor
/// crossing a cell corner touches four).
const STILL_CELLS: usize = 4;
/// How long a picture must stand still to be a slide's steady view: three pictures at
/// 2 per second, with room for jitter.
const STEADY_SECS: f64 = 0.9;
/// Weight of the newest picture in a cell's activity (a running mean of "stirred").
/// Small, so that a fade (4 pictures at most) stays well under `DYNAMIC_ON`.
const ACTIVITY_RATE: f32 = 0.1;
/// A cell turns dynamic above this activity (7 stirring pictures in a row) and stays
/// so until it falls under `DYNAMIC_OFF`: a head that keeps still a moment stays
/// dynamic.
const DYNAMIC_ON: f32 = 0.5;
const DYNAMIC_OFF: f32 = 0.2;
/// A dynamic cell quiet for this long counts again: the slide's picture has followed
/// it to its last state (a video inside a slide that ended).
const QUIET_SECS: f64 = 2.0;
/// Before the first slide, a cell with this much activity has stirred lately (a
/// webcam over a black opening): it and its neighbours are not content.
const STIRRED: f32 = 0.05;
/// Activity is learnt only while less than this share of the cells stir: a cut, a
/// fade or a scroll moves everything and says nothing about regions.
const BUSY_SHARE: f32 = 0.5;
/// A cell holds detail when its pixels span this much luma, or its mean lies this
/// far from the picture's typical cell.
const DETAIL: u8 = 24;
/// A picture with fewer than this share of detailed cells, motion aside, is blank
/// (black between slides, the bottom of a fade): never a slide.
const BLANK_SHARE: f32 = 0.02;
/// Scrolls of up to a third of the height (the height over this) are looked for: a
/// terminal pushing its lines up by a command's output is the same screen, a page
/// down is a new one.
const SCROLL_SHARE: usize = 3;
/// A scroll explains a change when, shifted, all but a third of the differing cells
/// match: two different slides match a little at many shifts.
const SCROLL_EXPLAINS: usize = 3;

/// The grid of cells over the working picture.
#[derive(Debug, Clone, PartialEq)]
struct Grid {
    width: usize,
    height: usize,
    columns: usize,
    rows: usize,
}

impl Grid {
    fn new(width: usize, height: usize) -> Self {
        Grid {
            width,
            height,
            columns: width.div_ceil(CELL),
            rows: height.div_ceil(CELL),
        }
    }

    fn cells(&self) -> usize {
        self.columns * self.rows
    }

    /// Mean absolute difference of `now` and `then` in each cell, `then` read
    /// `quarters` quarter rows lower (content that scrolled up by that much) and
    /// only every `step`th row. Cells `then` does not reach come out infinite.
    fn shifted_differences<'a>(
        &self,
        then: &'a [u8],
        now: &'a [u8],
        quarters: isize,
        step: usize,
    ) -> Vec<f32> {
        let mut sums = vec![0u32; self.cells()];
        let mut areas = vec![0u32; self.cells()];
        for y in (0..self.height).step_by(step) {
            let Some(at) = (4 * y).checked_add_signed(quarters) else {
                continue;
            };
            let (from, part) = (at / 4, (at % 4) as u32);
            if from + usize::from(part > 0) >= self.height {
                continue;
            }
            let width = self.width;
            let row = |luma: &'a [u8], y: usize| luma[y * width..][..width].chunks(CELL);
            let below = from + usize::from(part > 0);
            let spans = row(now, y).zip(row(then, from)).zip(row(then, below));
            let first = y / CELL * self.columns;
            for (c, ((now, above), below)) in spans.enumerate() {
                sums[first + c] += now
                    .iter()
                    .zip(above)
                    .zip(below)
                    .map(|((&n, &a), &b)| {
                        let between = u32::from(a) * (4 - part) + u32::from(b) * part;
                        (4 * u32::from(n)).abs_diff(between)
                    })
                    .sum::<u32>();
                areas[first + c] += 4 * now.len() as u32;
            }
        }
        sums.iter()
            .zip(&areas)
            .map(|(&sum, &area)| match area {
                0 => f32::INFINITY,
                _ => sum as f32 / area as f32,
            })
            .collect()
    }

    fn differences(&self, then: &[u8], now: &[u8]) -> Vec<f32> {
        self.shifted_differences(then, now, 0, 1)
    }

    /// `luma` blurred up and down ([1, 2, 1] over three rows).
    fn blurred(&self, luma: &[u8]) -> Vec<u8> {
        let row = |y: usize| &luma[y * self.width..(y + 1) * self.width];
        (0..self.height)
            .flat_map(|y| {
                let (above, here) = (row(y.saturating_sub(1)), row(y));
                let below = row((y + 1).min(self.height - 1));
                (0..self.width).map(move |x| {
                    let sum = u32::from(above[x]) + 2 * u32::from(here[x]) + u32::from(below[x]);
                    ((sum + 2) / 4) as u8
                })
            })
            .collect()
    }

    /// Whether each cell holds detail: contrast inside it, or a shade away from the
    /// picture's typical cell.
    fn detailed(&self, luma: &[u8]) -> Vec<bool> {
        let mut low = vec![u8::MAX; self.cells()];
        let mut high = vec![0u8; self.cells()];
        let mut sums = vec![0u32; self.cells()];
        let mut areas = vec![0u32; self.cells()];
        for (y, row) in luma.chunks_exact(self.width).enumerate() {
            let first = y / CELL * self.columns;
            for (c, span) in (first..).zip(row.chunks(CELL)) {
                low[c] = span.iter().fold(low[c], |low, &v| low.min(v));
                high[c] = span.iter().fold(high[c], |high, &v| high.max(v));
                sums[c] += span.iter().map(|&v| u32::from(v)).sum::<u32>();
                areas[c] += span.len() as u32;
            }
        }
        let means: Vec<u8> = sums
            .iter()
            .zip(&areas)
            .map(|(&sum, &area)| (sum / area.max(1)) as u8)
            .collect();
        let mut sorted = means.clone();
        sorted.sort_unstable();
        let typical = sorted[sorted.len() / 2];
        (0..self.cells())
            .map(|c| {
                high[c].saturating_sub(low[c]) >= DETAIL || means[c].abs_diff(typical) >= DETAIL
            })
            .collect()
    }

    /// `marked` grown by one cell in every direction.
    fn grown(&self, marked: &[bool]) -> Vec<bool> {
        (0..self.cells())
            .map(|c| {
                let (x, y) = (c % self.columns, c / self.columns);
                let near = |d: usize, n: usize| d.saturating_sub(1)..(d + 2).min(n);
                near(y, self.rows)
                    .any(|ny| near(x, self.columns).any(|nx| marked[ny * self.columns + nx]))
            })
            .collect()
    }

    /// Copies cell `c` of `from` into `to`.
    fn copy_cell(&self, c: usize, from: &[u8], to: &mut [u8]) {
        let (x0, y0) = (c % self.columns * CELL, c / self.columns * CELL);
        let x1 = (x0 + CELL).min(self.width);
        for y in y0..(y0 + CELL).min(self.height) {
            let row = y * self.width;
            to[row + x0..row + x1].copy_from_slice(&from[row + x0..row + x1]);
        }
    }
}

/// What a cell's recent pictures say about it.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// Running mean of "stirred since the previous picture".
    activity: f32,
    /// Part of a region that keeps moving.
    dynamic: bool,
    stirred_at: Option<f64>,
    /// Set aside for now: dynamic, and stirred lately.
    moving: bool,
}

impl Cell {
    /// Takes in whether the cell stirred at `pts`; `learn` is false when the whole
    /// picture moved, which says nothing about regions.
    fn update(&mut self, pts: f64, stirred: bool, learn: bool) {
        if stirred {
            self.stirred_at = Some(pts);
        }
        if learn {
            let sample = if stirred { 1.0 } else { 0.0 };
            self.activity += ACTIVITY_RATE * (sample - self.activity);
            if self.activity > DYNAMIC_ON {
                self.dynamic = true;
            } else if self.activity < DYNAMIC_OFF {
                self.dynamic = false;
            }
        }
        self.moving = self.dynamic && self.stirred_at.is_some_and(|at| pts - at < QUIET_SECS);
    }
}

/// A picture at the working size.
#[derive(Debug, Clone)]
struct Small {
    pts_secs: f64,
    luma: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Seen {
    /// Nothing new.
    Nothing,
    /// This picture is the first steady view of a new slide (the first slide
    /// included): keep it for OCR. `start_secs` is when the change to it began: the
    /// first picture of a fade, the first picture of the lecture for its first slide.
    NewSlide { start_secs: f64 },
}

/// Finds slide changes in pictures fed in time order. Holds four small pictures,
/// whatever the lecture's length.
#[derive(Default)]
pub struct Detector {
    grid: Option<Grid>,
    cells: Vec<Cell>,
    previous: Option<Small>,
    /// The first picture of the current still stretch: stillness is measured against
    /// it, so a slow drift cannot pass for still.
    anchor: Option<Small>,
    /// The current slide's picture; its dynamic cells follow the newest picture.
    slide: Option<Vec<u8>>,
    /// When the picture began to depart from the slide (or the lecture began).
    departed_at: Option<f64>,
}

/// The pictures are left out: large, and no use read as numbers.
impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("grid", &self.grid)
            .field(
                "moving_cells",
                &self.cells.iter().filter(|c| c.moving).count(),
            )
            .field("has_slide", &self.slide.is_some())
            .field("departed_at", &self.departed_at)
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next picture in time order, at any size: it is shrunk to
    /// `WORK_WIDTH` here. Times come from `pts_secs`, whatever the rate.
    pub fn push(&mut self, picture: &Picture) -> Seen {
        let small = shrink(picture, WORK_WIDTH);
        let now = Small {
            pts_secs: picture.pts_secs,
            luma: small.luma,
        };
        let grid = Grid::new(small.width as usize, small.height as usize);
        if self.grid.as_ref() != Some(&grid) {
            self.restart(grid, now);
            return Seen::Nothing;
        }
        self.learn_activity(&grid, &now);
        let steady = self.steady_for(&grid, &now) >= STEADY_SECS;
        let seen = match self.slide.take() {
            None => self.first_slide(&grid, &now, steady),
            Some(slide) => self.next_slide(&grid, &now, steady, slide),
        };
        self.previous = Some(now);
        seen
    }

    /// Before any slide: the first steady picture with something on it is one, dated
    /// from the first picture.
    fn first_slide(&mut self, grid: &Grid, now: &Small, steady: bool) -> Seen {
        if !steady || self.blank(grid, &now.luma, true) {
            return Seen::Nothing;
        }
        self.slide = Some(now.luma.clone());
        Seen::NewSlide {
            start_secs: self.departed_at.take().unwrap_or(now.pts_secs),
        }
    }

    /// After the first slide: a steady picture is a new slide or taken into this one.
    fn next_slide(&mut self, grid: &Grid, now: &Small, steady: bool, mut slide: Vec<u8>) -> Seen {
        for (c, cell) in self.cells.iter().enumerate() {
            if cell.moving {
                grid.copy_cell(c, &now.luma, &mut slide);
            }
        }
        let differences = grid.differences(&slide, &now.luma);
        let differing: Vec<bool> = differences.iter().map(|&d| d > CELL_DIFFERS).collect();
        if self.counting(&differing).any(|d| d) {
            self.departed_at.get_or_insert(now.pts_secs);
        } else {
            self.departed_at = None;
        }
        if !steady || self.blank(grid, &now.luma, false) {
            // A blank picture (black between two slides) is not taken in: the change
            // dates from when the last slide began to go.
            self.slide = Some(slide);
            return Seen::Nothing;
        }
        let changed = self.is_change(grid, &differing)
            && !self.scrolled(grid, &slide, &now.luma, &differences);
        // Either way the steady view is the slide's picture from now on: small
        // differences are taken in, so that they never add up to a change.
        self.slide = Some(now.luma.clone());
        let start_secs = self.departed_at.take().unwrap_or(now.pts_secs);
        if changed {
            Seen::NewSlide { start_secs }
        } else {
            Seen::Nothing
        }
    }

    /// Starts over on a picture of another size (the first one included): the next
    /// steady view is a new slide, dated from here.
    fn restart(&mut self, grid: Grid, now: Small) {
        self.cells = vec![Cell::default(); grid.cells()];
        self.grid = Some(grid);
        self.slide = None;
        self.departed_at = Some(self.departed_at.unwrap_or(now.pts_secs));
        self.anchor = Some(now.clone());
        self.previous = Some(now);
    }

    /// Updates each cell's activity from what stirred since the previous picture.
    fn learn_activity(&mut self, grid: &Grid, now: &Small) {
        let Some(previous) = &self.previous else {
            return;
        };
        let stirred: Vec<bool> = grid
            .differences(&previous.luma, &now.luma)
            .into_iter()
            .map(|d| d > CELL_STIRS)
            .collect();
        let stirring = stirred.iter().filter(|&&s| s).count();
        let learn = (stirring as f32) < BUSY_SHARE * grid.cells() as f32;
        for (cell, stirred) in self.cells.iter_mut().zip(stirred) {
            cell.update(now.pts_secs, stirred, learn);
        }
    }

    /// How long the picture has stood still, up to `now`.
    fn steady_for(&mut self, grid: &Grid, now: &Small) -> f64 {
        let still = self.anchor.as_ref().is_some_and(|anchor| {
            let differences = grid.differences(&anchor.luma, &now.luma);
            let moved = self
                .counting(&differences)
                .filter(|&d| d > CELL_DIFFERS)
                .count();
            // Time that runs backwards starts the stretch over rather than stall it.
            moved <= STILL_CELLS && anchor.pts_secs <= now.pts_secs
        });
        if !still {
            self.anchor = Some(now.clone());
        }
        self.anchor
            .as_ref()
            .map_or(0.0, |anchor| now.pts_secs - anchor.pts_secs)
    }

    /// Whether the picture is all one shade, once motion and what surrounds it are
    /// set aside (a webcam's still background lies around its moving head).
    fn blank(&self, grid: &Grid, luma: &[u8], before_first: bool) -> bool {
        let moving: Vec<bool> = self
            .cells
            .iter()
            .map(|c| c.moving || (before_first && c.activity > STIRRED))
            .collect();
        let around_motion = grid.grown(&moving);
        let content = grid
            .detailed(luma)
            .into_iter()
            .zip(around_motion)
            .filter(|&(detailed, near)| detailed && !near)
            .count();
        (content as f32) < BLANK_SHARE * grid.cells() as f32
    }

    /// Whether the cells that differ from the slide make a new one: many of them, or
    /// enough of them and the title's place among them.
    fn is_change(&self, grid: &Grid, differing: &[bool]) -> bool {
        let share = self.share(self.counting(differing).filter(|&d| d).count());
        let band_rows = (TITLE_BAND * grid.rows as f32 + 0.5) as usize;
        let in_band = self
            .counting(&differing[..band_rows * grid.columns])
            .filter(|&d| d)
            .count();
        share >= WHOLE_SHARE || (share >= CHANGE_SHARE && in_band >= TITLE_CELLS)
    }

    /// Whether the picture is the slide scrolled up or down (some of it may have
    /// stayed put: a window's frame), with less than a change's worth of new lines.
    fn scrolled(&self, grid: &Grid, slide: &[u8], now: &[u8], unshifted: &[f32]) -> bool {
        // Blurred up and down, text shifted by a fraction of a row matches again.
        let (slide, now) = (grid.blurred(slide), grid.blurred(now));
        let still = grid.differences(&slide, &now);
        // What a shift leaves unexplained, cell by cell (a cell that stayed put is
        // explained as it is).
        let unexplained = |quarters: isize, step: usize| -> Vec<f32> {
            let shifted = grid.shifted_differences(&slide, &now, quarters, step);
            let residue = still.iter().zip(&shifted).map(|(a, b)| a.min(*b));
            self.counting(&residue.collect::<Vec<_>>()).collect()
        };
        // Whole rows on every fourth row find the shift; quarter rows around it make
        // it exact (a terminal's line is rarely a whole number of working rows).
        let reach = (grid.height / SCROLL_SHARE) as isize;
        let Some((rows, _)) = (1..=reach)
            .flat_map(|rows| [rows, -rows])
            .map(|rows| (rows, unexplained(4 * rows, 4).iter().sum::<f32>()))
            .min_by(|(_, a), (_, b)| a.total_cmp(b))
        else {
            return false;
        };
        let before = self
            .counting(unshifted)
            .filter(|&d| d > CELL_DIFFERS)
            .count();
        (4 * rows - 3..=4 * rows + 3).any(|quarters| {
            let after = unexplained(quarters, 1)
                .into_iter()
                .filter(|&d| d > CELL_DIFFERS)
                .count();
            self.share(after) < CHANGE_SHARE && after * SCROLL_EXPLAINS <= before
        })
    }

    /// The values of the cells that count: those not moving.
    fn counting<'a, T: Copy>(&'a self, values: &'a [T]) -> impl Iterator<Item = T> + 'a {
        values
            .iter()
            .zip(&self.cells)
            .filter(|(_, cell)| !cell.moving)
            .map(|(&v, _)| v)
    }

    /// `cells` as a share of the cells that count.
    fn share(&self, cells: usize) -> f32 {
        let counted = self.cells.iter().filter(|c| !c.moving).count();
        cells as f32 / counted.max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 640;
    const H: usize = 360;

    /// A tiny deterministic noise source (xorshift), for webcams and videos.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u8
        }
    }

    /// A slide: a light page with a title and bullet lines, each line given as the
    /// letter counts of its words; letters are dark strokes, so text has texture.
    struct Layout {
        title: &'static [usize],
        bullets: &'static [&'static [usize]],
        /// A grey picture box on the right half.
        figure: bool,
    }

    fn fill(luma: &mut [u8], (x0, y0, x1, y1): (usize, usize, usize, usize), shade: u8) {
        for y in y0..y1.min(H) {
            luma[y * W + x0..y * W + x1.min(W)].fill(shade);
        }
    }

    /// Draws a line of words from `x`, `y` with letters `height` px tall.
    fn words(luma: &mut [u8], x: usize, y: usize, height: usize, letters: &[usize]) {
        let (letter, gap) = (height / 2, height / 4);
        let mut x = x;
        for &n in letters {
            for _ in 0..n {
                fill(luma, (x, y, x + letter, y + height), 30);
                x += letter + gap;
            }
            x += 2 * letter;
        }
    }

    fn slide(layout: &Layout) -> Vec<u8> {
        let mut luma = vec![235; W * H];
        fill(&mut luma, (0, 0, W, 6), 120);
        words(&mut luma, 40, 24, 26, layout.title);
        for (i, bullet) in layout.bullets.iter().enumerate() {
            let y = 100 + 40 * i;
            fill(&mut luma, (40, y + 4, 48, y + 12), 30);
            words(&mut luma, 60, y, 16, bullet);
        }
        if layout.figure {
            fill(&mut luma, (330, 90, 610, 250), 150);
        }
        luma
    }

    fn blend(a: &[u8], b: &[u8], along: f64) -> Vec<u8> {
        let along = along.clamp(0.0, 1.0);
        a.iter()
            .zip(b)
            .map(|(&a, &b)| (f64::from(a) * (1.0 - along) + f64::from(b) * along).round() as u8)
            .collect()
    }

    /// A webcam in the bottom-right corner (a sixth of the width): a head that sways
    /// over a wall, with sensor noise.
    fn webcam(luma: &mut [u8], t: f64, noise: &mut Noise) {
        let (x0, y0, w, h) = (520, 270, 107, 80);
        let (cx, cy) = (
            w as f64 / 2.0 + 12.0 * (t * 1.3).sin(),
            45.0 + 5.0 * (t * 0.7).sin(),
        );
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = ((x as f64 - cx) / 20.0, (y as f64 - cy) / 28.0);
                let base = if dx * dx + dy * dy < 1.0 { 190 } else { 90 };
                luma[(y0 + y) * W + x0 + x] = base + noise.next() % 24;
            }
        }
    }

    fn cursor(luma: &mut [u8], t: f64) {
        let x = (320.0 + 250.0 * (t * 0.37).sin()) as usize;
        let y = (180.0 + 140.0 * (t * 0.23 + 1.0).sin()) as usize;
        fill(luma, (x, y, x + 6, y + 10), 0);
    }

    /// A video playing in a fifth of the picture (`RECONSTRUCTION`'s figure): fresh
    /// noise at every picture.
    fn video(luma: &mut [u8], noise: &mut Noise) {
        for y in 90..250 {
            for x in 330..610 {
                luma[y * W + x] = noise.next();
            }
        }
    }

    fn picture(pts_secs: f64, luma: Vec<u8>) -> Picture {
        Picture {
            pts_secs,
            width: W as u32,
            height: H as u32,
            luma,
        }
    }

    /// The starts of the new slides found in pictures at 2 per second, from 0.1 s.
    fn starts(secs: f64, mut scene: impl FnMut(f64) -> Vec<u8>) -> Vec<f64> {
        let mut detector = Detector::new();
        (0..(secs * 2.0) as usize)
            .map(|i| 0.1 + i as f64 / 2.0)
            .filter_map(|t| match detector.push(&picture(t, scene(t))) {
                Seen::NewSlide { start_secs } => Some(start_secs),
                Seen::Nothing => None,
            })
            .collect()
    }

    fn assert_near(found: &[f64], truth: &[f64]) {
        assert_eq!(found.len(), truth.len(), "found {found:?}, truth {truth:?}");
        for (f, t) in found.iter().zip(truth) {
            assert!((f - t).abs() <= 1.0, "found {found:?}, truth {truth:?}");
        }
    }

    const SAMPLING: Layout = Layout {
        title: &[8, 3, 3, 7, 4],
        bullets: &[
            &[1, 6, 2, 7, 5, 1, 7],
            &[8, 4, 2, 1, 1, 1],
            &[7, 2, 4, 6, 5, 3],
            &[9, 4, 5, 4],
        ],
        figure: false,
    };
    /// Same template as `SAMPLING`: only the title and the bullets' words differ.
    const ALIASING: Layout = Layout {
        title: &[8, 2, 8],
        bullets: &[
            &[5, 6, 4, 9, 2, 4],
            &[5, 1, 3, 4, 6],
            &[6, 5, 8, 2, 7],
            &[3, 2, 6, 8],
        ],
        figure: false,
    };
    const RECONSTRUCTION: Layout = Layout {
        title: &[14],
        bullets: &[&[6, 4, 13], &[9, 4, 5, 4]],
        figure: true,
    };
    const QUANTIZATION: Layout = Layout {
        title: &[12, 5],
        bullets: &[&[4, 6, 7, 2, 1, 4], &[5, 5, 5, 1, 2, 3, 3]],
        figure: false,
    };
    const SUMMARY: Layout = Layout {
        title: &[7, 3, 4, 4],
        bullets: &[&[6, 5, 5, 3, 7], &[6, 5, 4, 6], &[11, 4, 1, 4]],
        figure: false,
    };

    #[test]
    fn finds_each_slide_change_through_webcam_cursor_video_and_fades() {
        let [a, b, c, d, e] = [
            &SAMPLING,
            &ALIASING,
            &RECONSTRUCTION,
            &QUANTIZATION,
            &SUMMARY,
        ]
        .map(slide);
        let black = vec![0; W * H];
        let mut noise = Noise(7);
        let found = starts(64.0, |t| {
            let mut luma = match t {
                // The recording opens on black and fades in.
                t if t < 1.5 => black.clone(),
                t if t < 2.5 => blend(&black, &a, t - 1.5),
                t if t < 12.0 => a.clone(),
                // A cut to a slide of the same template.
                t if t < 24.0 => b.clone(),
                // A cross-fade of a second.
                t if t < 25.0 => blend(&b, &c, t - 24.0),
                t if t < 40.0 => c.clone(),
                // Through black, which holds a second.
                t if t < 40.5 => blend(&c, &black, (t - 40.0) * 2.0),
                t if t < 41.5 => black.clone(),
                t if t < 42.0 => blend(&black, &d, (t - 41.5) * 2.0),
                t if t < 52.0 => d.clone(),
                t if t < 53.0 => blend(&d, &e, t - 52.0),
                _ => e.clone(),
            };
            if (28.0..36.0).contains(&t) {
                video(&mut luma, &mut noise);
            }
            webcam(&mut luma, t, &mut noise);
            cursor(&mut luma, t);
            luma
        });
        assert_eq!(
            found[0], 0.1,
            "the first slide dates from the first picture"
        );
        assert_near(&found, &[0.1, 12.0, 24.0, 40.0, 52.0]);
    }

    #[test]
    fn a_steady_slide_with_webcam_and_cursor_is_one_slide() {
        let a = slide(&SAMPLING);
        let mut noise = Noise(11);
        let found = starts(60.0, |t| {
            let mut luma = a.clone();
            webcam(&mut luma, t, &mut noise);
            cursor(&mut luma, t);
            luma
        });
        assert_eq!(found, [0.1]);
    }

    #[test]
    fn cuts_between_still_shots_of_a_video_in_a_slide_are_not_new_slides() {
        let c = slide(&RECONSTRUCTION);
        let mut noise = Noise(5);
        // Two shots that hold still for 4 s each, then motion, then the poster again.
        let shot = |seed| {
            let mut luma = c.clone();
            video(&mut luma, &mut Noise(seed));
            luma
        };
        let (first, second) = (shot(21), shot(22));
        let found = starts(40.0, |t| {
            let mut luma = match t {
                t if (10.0..14.0).contains(&t) => first.clone(),
                t if (14.0..18.0).contains(&t) => second.clone(),
                _ => c.clone(),
            };
            if (18.0..26.0).contains(&t) {
                video(&mut luma, &mut noise);
            }
            webcam(&mut luma, t, &mut noise);
            cursor(&mut luma, t);
            luma
        });
        assert_eq!(found, [0.1]);
    }

    #[test]
    fn a_bullet_appearing_is_not_a_new_slide() {
        const BUILT: Layout = Layout {
            title: QUANTIZATION.title,
            bullets: &[
                QUANTIZATION.bullets[0],
                QUANTIZATION.bullets[1],
                &[6, 5, 3, 3, 5],
            ],
            figure: false,
        };
        let (d, built) = (slide(&QUANTIZATION), slide(&BUILT));
        let found = starts(30.0, |t| if t < 15.0 { d.clone() } else { built.clone() });
        assert_eq!(found, [0.1]);
    }

    /// A terminal: light text on dark, 14 px lines; `typed` letters of the last line
    /// are shown, the lines before it scrolled up by `scrolled` lines.
    fn terminal(lines: &[&[usize]], scrolled: usize, typed: usize, t: f64) -> Vec<u8> {
        let mut luma = vec![20; W * H];
        let shown = lines.iter().skip(scrolled).take(H / 18 - 1);
        for (row, line) in shown.enumerate() {
            let y = 6 + 18 * row;
            let last = scrolled + row + 1 == lines.len();
            let mut x = 8;
            let mut left = if last { typed } else { usize::MAX };
            for &n in line.iter() {
                for _ in 0..n.min(left) {
                    fill(&mut luma, (x, y, x + 6, y + 12), 200);
                    x += 9;
                }
                left = left.saturating_sub(n);
                x += 9;
            }
            // The block cursor blinks on the last line.
            if last && ((t * 2.0) as usize).is_multiple_of(2) {
                fill(&mut luma, (x, y, x + 8, y + 14), 200);
            }
        }
        luma
    }

    #[test]
    fn typing_output_and_short_scrolls_are_not_new_slides() {
        let line: &[usize] = &[4, 2, 7, 3, 9, 2, 5];
        let lines: Vec<&[usize]> = (0..40).map(|i| &line[i % 3..]).collect();
        let found = starts(75.0, |t| {
            // Commands typed at 5 letters a second.
            let typed = ((t % 15.0 - 2.0).max(0.0) * 5.0) as usize;
            // Their output: 6 lines below the prompt at 15 s, 5 more that fill the
            // terminal at 30 s, then lines that push it up by 3 and by 4.
            let (shown, scrolled) = match t {
                t if t < 15.0 => (8, 0),
                t if t < 30.0 => (14, 0),
                t if t < 45.0 => (19, 0),
                t if t < 60.0 => (22, 3),
                _ => (26, 7),
            };
            terminal(&lines[..shown], scrolled, typed, t)
        });
        assert_eq!(found, [0.1]);
    }

    #[test]
    fn a_page_down_is_a_new_slide() {
        // Lines of words whose lengths do not repeat, so no shift matches a page.
        let mut noise = Noise(3);
        let lines: Vec<Vec<usize>> = (0..60)
            .map(|_| {
                (0..2 + noise.next() % 6)
                    .map(|_| 1 + usize::from(noise.next() % 9))
                    .collect()
            })
            .collect();
        let lines: Vec<&[usize]> = lines.iter().map(Vec::as_slice).collect();
        let found = starts(30.0, |t| {
            let scrolled = if t < 15.0 { 0 } else { 19 };
            terminal(&lines[..scrolled + 19], scrolled, usize::MAX, 0.0)
        });
        assert_near(&found, &[0.1, 15.0]);
    }

    #[test]
    fn shrink_averages_boxes_and_keeps_the_aspect_ratio() {
        let small = Picture {
            pts_secs: 1.5,
            width: 4,
            height: 2,
            luma: vec![0, 10, 100, 200, 20, 30, 100, 200],
        };
        let half = shrink(&small, 2);
        assert_eq!((half.width, half.height, half.pts_secs), (2, 1, 1.5));
        assert_eq!(half.luma, [15, 150]);
        let full = picture(0.0, vec![7; W * H]);
        let shrunk = shrink(&full, 160);
        assert_eq!((shrunk.width, shrunk.height), (160, 90));
        assert!(shrunk.luma.iter().all(|&v| v == 7));
        // Wider than the source: pixels repeat.
        assert_eq!(shrink(&small, 8).luma.len(), 8 * 4);
        // A short buffer is read as far as it goes.
        let short = Picture {
            luma: vec![9; 4],
            ..small
        };
        assert_eq!(shrink(&short, 2).height, 1);
    }
}
