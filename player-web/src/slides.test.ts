import { describe, expect, it } from 'vitest';
import type { Slide } from './api';
import { TITLE_MAX, chapterCount, chaptersToPublish, cleanTitle, mergeIntoPrevious, previousKept, proposedRows, slideHint, undoMerge } from './slides';

const slide = (position: number, start_secs: number, title: string | null, text = title ?? ''): Slide =>
  ({ position, start_secs, title, text, thumbnail_url: `/api/lectures/l1/slides/${position}/thumbnail` });

const found = [
  slide(0, 0, 'Sampling and the Nyquist Rate', 'Sampling and the Nyquist Rate\nA signal is measured at regular intervals'),
  slide(1, 9.04, 'Aliasing in Practice'),
  slide(2, 15, null, '\n  Each sample is rounded to a fixed level\n'),
  slide(3, 28, 'The Discrete Fourier Transform'),
];

describe('proposed chapters', () => {
  it('proposes every slide, used when a title was read', () => {
    const rows = proposedRows(found);
    expect(rows.map((r) => [r.title, r.use, r.merged])).toEqual([
      ['Sampling and the Nyquist Rate', true, false],
      ['Aliasing in Practice', true, false],
      ['', false, false],
      ['The Discrete Fourier Transform', true, false],
    ]);
    expect(chaptersToPublish(rows)).toEqual([
      { start_secs: 0, title: 'Sampling and the Nyquist Rate' },
      { start_secs: 9.04, title: 'Aliasing in Practice' },
      { start_secs: 28, title: 'The Discrete Fourier Transform' },
    ]);
  });

  it('starts the first chapter at 0 when its slide came within the first second', () => {
    const rows = proposedRows([slide(0, 0.059, 'Opening'), slide(1, 9.059, 'Next')]);
    expect(chaptersToPublish(rows)).toEqual([{ start_secs: 0, title: 'Opening' }, { start_secs: 9.059, title: 'Next' }]);
    // Only the first: a later slide that became the first keeps its time.
    expect(chaptersToPublish([{ ...rows[0], use: false }, rows[1]])).toEqual([{ start_secs: 9.059, title: 'Next' }]);
    expect(chaptersToPublish(proposedRows([slide(0, 1.5, 'Late')]))[0].start_secs).toBe(1.5);
  });

  it('does not take a blank title for a read one', () => {
    expect(proposedRows([slide(0, 0, '   ')])[0].use).toBe(false);
  });

  it('publishes in time order whatever order the slides came in', () => {
    const rows = proposedRows([found[3], found[1], found[0]]);
    expect(chaptersToPublish(rows).map((c) => c.start_secs)).toEqual([0, 9.04, 28]);
  });

  it('publishes renamed, unticked and ticked-untitled rows as edited', () => {
    let rows = proposedRows(found);
    rows = rows.map((r, i) => (i === 0 ? { ...r, title: '  Sampling  ' } : i === 2 ? { ...r, use: true } : i === 3 ? { ...r, use: false } : r));
    expect(chaptersToPublish(rows)).toEqual([
      { start_secs: 0, title: 'Sampling' },
      { start_secs: 9.04, title: 'Aliasing in Practice' },
      // An empty title is named after its slide, counted as the panel shows it.
      { start_secs: 15, title: 'Slide 3' },
    ]);
  });

  it('cuts titles to what the chapters API takes', () => {
    expect(cleanTitle('  Fourier  ')).toBe('Fourier');
    expect(Array.from(cleanTitle('é'.repeat(300)))).toHaveLength(TITLE_MAX);
    expect(cleanTitle('👍'.repeat(201))).toBe('👍'.repeat(200));
    expect(chaptersToPublish([{ position: 4, start_secs: 40, title: '   ', use: true, merged: false }])).toEqual([{ start_secs: 40, title: 'Slide 5' }]);
  });

  it('merges a slide into the one above: its start goes, its title too when the one above has one', () => {
    const rows = mergeIntoPrevious(proposedRows(found), 1);
    expect(rows[1].merged).toBe(true);
    expect(rows[0].title).toBe('Sampling and the Nyquist Rate');
    expect(chaptersToPublish(rows)).toEqual([
      { start_secs: 0, title: 'Sampling and the Nyquist Rate' },
      { start_secs: 28, title: 'The Discrete Fourier Transform' },
    ]);
  });

  it('gives the merged title to a slide above that has none, and uses it', () => {
    const rows = mergeIntoPrevious(proposedRows(found), 3);
    expect(rows[2]).toMatchObject({ title: 'The Discrete Fourier Transform', use: true, merged: false });
    expect(chaptersToPublish(rows).at(-1)).toEqual({ start_secs: 15, title: 'The Discrete Fourier Transform' });
    expect(chaptersToPublish(rows)).toHaveLength(3);
  });

  it('merges into the nearest slide above that is not merged itself', () => {
    let rows = mergeIntoPrevious(proposedRows(found), 1);
    expect(previousKept(rows, 2)).toBe(0);
    rows = mergeIntoPrevious(rows, 2);
    expect(rows.map((r) => r.merged)).toEqual([false, true, true, false]);
    expect(chaptersToPublish(rows).map((c) => c.start_secs)).toEqual([0, 28]);
  });

  it('does nothing to the first slide or one merged already', () => {
    const rows = proposedRows(found);
    expect(mergeIntoPrevious(rows, 0)).toBe(rows);
    const merged = mergeIntoPrevious(rows, 1);
    expect(mergeIntoPrevious(merged, 1)).toBe(merged);
    expect(undoMerge(rows, 1)).toBe(rows);
  });

  it('undoes a merge, giving back what it took', () => {
    const rows = proposedRows(found);
    const merged = mergeIntoPrevious(rows, 3);
    expect(undoMerge(merged, 3)).toEqual(rows);
  });

  it('keeps a title written after the merge when undoing it', () => {
    let rows = mergeIntoPrevious(proposedRows(found), 3);
    rows = rows.map((r, i) => (i === 2 ? { ...r, title: 'Quantization' } : r));
    rows = undoMerge(rows, 3);
    expect(rows[2]).toMatchObject({ title: 'Quantization', use: true });
    expect(rows[3]).toMatchObject({ merged: false, title: 'The Discrete Fourier Transform' });
  });

  it('hints at a slide with its first line that is not its title', () => {
    expect(slideHint(found[0])).toBe('A signal is measured at regular intervals');
    expect(slideHint(found[2])).toBe('Each sample is rounded to a fixed level');
    expect(slideHint(found[1])).toBe('');
    expect(slideHint({ title: null, text: '' })).toBe('');
  });

  it('counts chapters', () => {
    expect(chapterCount(1)).toBe('1 chapter');
    expect(chapterCount(7)).toBe('7 chapters');
  });
});
