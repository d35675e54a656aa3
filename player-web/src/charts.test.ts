import { describe, expect, it } from 'vitest';
import { BOX, barLayout, fillDays, linePoints, niceMax, percent, retentionSummary } from './charts';
import { formatWatchTime } from './analytics';

describe('chart scaling', () => {
  it('rounds an axis up to 1, 2 or 5 times a power of ten', () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(1)).toBe(1);
    expect(niceMax(3)).toBe(5);
    expect(niceMax(7)).toBe(10);
    expect(niceMax(12)).toBe(20);
    expect(niceMax(0.37)).toBe(0.5);
    expect(niceMax(NaN)).toBe(1);
  });
  it('lays out bars in the plot area, scaled to the top of the axis', () => {
    const box = { width: 120, height: 120, left: 10, right: 10, top: 10, bottom: 10 };
    const bars = barLayout([0, 5, 10], 10, box);
    expect(bars).toHaveLength(3);
    expect(bars.map((b) => b.h)).toEqual([0, 50, 100]);
    expect(bars[2].y).toBe(10);
    expect(bars[0].y).toBe(110);
    expect(bars[0].x).toBeGreaterThanOrEqual(10);
    expect(bars[2].x + bars[2].w).toBeLessThanOrEqual(110);
  });
  it('spreads a line across the plot area', () => {
    const box = { width: 120, height: 120, left: 10, right: 10, top: 10, bottom: 10 };
    expect(linePoints([1, 0.5, 0], 1, box)).toBe('10,10 60,60 110,110');
    expect(linePoints([2], 1, box)).toBe('60,10'); // clamped to the top
    expect(linePoints(new Array(100).fill(1), 1, BOX).split(' ')).toHaveLength(100);
  });
  it('names a retention curve', () => {
    const r = new Array(100).fill(0).map((_, i) => (i < 50 ? 1 : 0.4));
    expect(retentionSummary(r)).toBe('Audience retention: 100% at the start, 40% at the middle, 40% at the end');
    expect(retentionSummary([])).toBe('Audience retention: no views yet');
    expect(percent(0.404)).toBe('40%');
  });
  it('fills the days without views', () => {
    expect(fillDays([{ day: '2025-03-03', value: 2 }, { day: '2025-02-27', value: 1 }])).toEqual([
      { day: '2025-02-27', value: 1 }, { day: '2025-02-28', value: 0 }, { day: '2025-03-01', value: 0 },
      { day: '2025-03-02', value: 0 }, { day: '2025-03-03', value: 2 },
    ]);
    expect(fillDays([])).toEqual([]);
    expect(fillDays([{ day: '2025-01-01', value: 1 }, { day: '2025-12-31', value: 1 }], 10)).toHaveLength(10);
  });
  it('formats watch time', () => {
    expect(formatWatchTime(29.6)).toBe('30 s');
    expect(formatWatchTime(725)).toBe('12 min 5 s');
    expect(formatWatchTime(120)).toBe('2 min');
    expect(formatWatchTime(12000)).toBe('3 h 20 min');
  });
});
