import { describe, expect, it } from 'vitest';
import { EventQueue, MAX_EVENTS, RangeTracker } from './beacons';

describe('watched ranges', () => {
  it('extends a range while the clock moves forward by small steps', () => {
    const r = new RangeTracker();
    for (const t of [0, 0.25, 0.5, 1, 1.25, 2]) r.tick(t);
    r.close();
    expect(r.take()).toEqual([{ kind: 'watched', from: 0, to: 2 }]);
  });
  it('starts a new range after a jump (a seek) and closes on pause', () => {
    const r = new RangeTracker();
    for (const t of [0, 1, 2, 3]) r.tick(t);
    r.close(); // seeking
    for (const t of [20, 21, 22]) r.tick(t);
    r.tick(40); // a jump not announced by a seek
    r.tick(41);
    r.close(); // pause
    expect(r.take()).toEqual([
      { kind: 'watched', from: 0, to: 3 },
      { kind: 'watched', from: 20, to: 22 },
      { kind: 'watched', from: 40, to: 41 },
    ]);
    expect(r.take()).toEqual([]);
  });
  it('a backward move starts a new range', () => {
    const r = new RangeTracker();
    r.tick(10);
    r.tick(11);
    r.tick(5);
    r.tick(6);
    r.close();
    expect(r.take().map((e) => e.kind === 'watched' && [e.from, e.to])).toEqual([[10, 11], [5, 6]]);
  });
  it('takes the open range so far and keeps it open from there', () => {
    const r = new RangeTracker();
    r.tick(0);
    r.tick(1.5);
    expect(r.take()).toEqual([{ kind: 'watched', from: 0, to: 1.5 }]);
    expect(r.take()).toEqual([]);
    r.tick(2.5);
    r.close();
    expect(r.take()).toEqual([{ kind: 'watched', from: 1.5, to: 2.5 }]);
  });
  it('ignores empty ranges and nonsense times', () => {
    const r = new RangeTracker();
    r.tick(NaN);
    r.tick(-1);
    r.tick(4);
    r.close();
    r.close();
    expect(r.take()).toEqual([]);
  });
});

describe('the event queue', () => {
  it('keeps at most the server limit, watched ranges first', () => {
    const q = new EventQueue();
    q.push({ kind: 'watched', from: 0, to: 1 });
    for (let i = 0; i < MAX_EVENTS + 20; i++) q.push({ kind: 'error', fatal: false });
    expect(q.length).toBe(MAX_EVENTS);
    const events = q.drain();
    expect(events[0]).toEqual({ kind: 'watched', from: 0, to: 1 });
    expect(q.length).toBe(0);
  });
});
