import { describe, expect, it } from 'vitest';
import { matchingLine } from './search';

describe('screen hits', () => {
  it('quote the slide line holding a word looked for', () => {
    const slide = 'The Discrete Fourier Transform\nTurns a block of samples into frequencies\nZephyrine coefficients converge';
    expect(matchingLine(slide, 'zephyr')).toBe('Zephyrine coefficients converge');
    expect(matchingLine(slide, 'block samples')).toBe('Turns a block of samples into frequencies');
    expect(matchingLine(slide, 'nothing')).toBe('The Discrete Fourier Transform');
    expect(matchingLine('', 'x')).toBe('');
  });
});
