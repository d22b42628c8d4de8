/**
 * Frame -> model input in one pass: bilinear resize straight from the packed rgb24 frame into the planar NCHW
 * float32 tensor, with the channel reorder and the normalisation fused in. Pure TS: sharp would need a copy
 * out of libvips plus a second pass to transpose and normalise, which costs more than this loop on small
 * inputs, and keeps an async native call out of the per-frame path.
 *
 * Sampling matches OpenCV's INTER_LINEAR (half-pixel centres, edge clamp, no antialiasing), which is what the
 * reference pipelines of these models used at training time.
 *
 * The camera path skips the resize: ffmpeg also scales each frame to the camera's model content size
 * (RgbFrame.scaled, see ingest/ffmpeg-args.ts), and this module then only reorders and normalises, ~3x less
 * CPU than the resize loop (issue 18, BENCHMARKS.md "Edge pipeline").
 */
import { clampBox, type Box, type Point } from '../lib/geometry.js';
import type { LetterboxMeta, RgbFrame, ScaledImage } from './types.js';

export type ResizeMode = 'stretch' | 'letterbox-tl' | 'letterbox-center';

export interface ResizeOptions {
  /** Model input size. */
  width: number;
  height: number;
  /** stretch ignores aspect; letterbox keeps it and pads right/bottom (tl) or both sides (center). */
  mode: ResizeMode;
  /** Padding in raw pixel units (0..255); normalised like any pixel, so 114 with scale 1/255 feeds 114/255. */
  padValue: number;
  /** Plane order of the tensor: 'bgr' puts blue in plane 0 (OpenCV-trained models). */
  channelOrder: 'rgb' | 'bgr';
  /** value = (pixel - mean) * scale */
  scale: number;
  mean: number;
}

/** Where the frame lands in the input for this frame size (same rules as YOLOX / ultralytics letterbox). */
export function letterboxMeta(frameWidth: number, frameHeight: number, opts: ResizeOptions): LetterboxMeta {
  const { width, height } = opts;
  let contentWidth = width;
  let contentHeight = height;
  let padLeft = 0;
  let padTop = 0;
  if (opts.mode !== 'stretch') {
    const r = Math.min(width / frameWidth, height / frameHeight);
    // round, not floor: 360 * 0.65 is 233.99999 in floating point and must give 234 rows.
    contentWidth = Math.min(width, Math.max(1, Math.round(frameWidth * r)));
    contentHeight = Math.min(height, Math.max(1, Math.round(frameHeight * r)));
    if (opts.mode === 'letterbox-center') {
      // ultralytics: top = round(dh - 0.1), so an odd remainder puts the extra pixel at the bottom/right.
      // (max with 0 also turns round(-0.1) = -0 into 0.)
      padLeft = Math.max(0, Math.round((width - contentWidth) / 2 - 0.1));
      padTop = Math.max(0, Math.round((height - contentHeight) / 2 - 0.1));
    }
  }
  return {
    frameWidth,
    frameHeight,
    inputWidth: width,
    inputHeight: height,
    contentWidth,
    contentHeight,
    scaleX: contentWidth / frameWidth,
    scaleY: contentHeight / frameHeight,
    padLeft,
    padTop,
    padRight: width - contentWidth - padLeft,
    padBottom: height - contentHeight - padTop,
  };
}

/** Sampling tables for one axis: byte offsets of the two source taps and the weight of the second. */
interface AxisTable {
  i0: Int32Array;
  i1: Int32Array;
  w: Float64Array;
}

function axisTable(srcSize: number, dstSize: number, stride: number): AxisTable {
  const i0 = new Int32Array(dstSize);
  const i1 = new Int32Array(dstSize);
  const w = new Float64Array(dstSize);
  const ratio = srcSize / dstSize;
  for (let d = 0; d < dstSize; d++) {
    let s = (d + 0.5) * ratio - 0.5;
    if (s < 0) s = 0;
    let s0 = Math.floor(s);
    let f = s - s0;
    if (s0 >= srcSize - 1) {
      s0 = srcSize - 1;
      f = 0;
    }
    i0[d] = s0 * stride;
    i1[d] = Math.min(s0 + 1, srcSize - 1) * stride;
    w[d] = f;
  }
  return { i0, i1, w };
}

interface Plan {
  meta: LetterboxMeta;
  xs: AxisTable;
  ys: AxisTable;
}

function makePlan(frameWidth: number, frameHeight: number, opts: ResizeOptions): Plan {
  const meta = letterboxMeta(frameWidth, frameHeight, opts);
  return {
    meta,
    xs: axisTable(frameWidth, meta.contentWidth, 3),
    ys: axisTable(frameHeight, meta.contentHeight, frameWidth * 3),
  };
}

function checkSize(frame: RgbFrame): void {
  if (
    !(frame.width > 0 && frame.height > 0) ||
    !Number.isInteger(frame.width) ||
    !Number.isInteger(frame.height)
  )
    throw new RangeError(`invalid frame size ${frame.width}x${frame.height}`);
}

function checkFrame(frame: RgbFrame): void {
  checkSize(frame);
  if (frame.data.length < frame.width * frame.height * 3)
    throw new RangeError(
      `frame data has ${frame.data.length} bytes, ${frame.width}x${frame.height} rgb24 needs ${frame.width * frame.height * 3}`,
    );
}

function tensorFor(opts: ResizeOptions, into: Float32Array | undefined): Float32Array {
  const { width: W, height: H } = opts;
  const out = into ?? new Float32Array(3 * W * H);
  if (out.length !== 3 * W * H)
    throw new RangeError(`tensor has ${out.length} values, ${W}x${H}x3 needs ${3 * W * H}`);
  return out;
}

/** Padding is rewritten every time: the tensor is shared and costs nothing to keep honest. */
function fillPadding(out: Float32Array, opts: ResizeOptions, meta: LetterboxMeta): void {
  const { width: W, height: H } = opts;
  const plane = W * H;
  const { contentWidth: cw, contentHeight: ch, padLeft, padTop } = meta;
  if (cw === W && ch === H) return;
  const pad = (opts.padValue - opts.mean) * opts.scale;
  for (let c = 0; c < 3; c++) {
    const base = c * plane;
    out.fill(pad, base, base + padTop * W);
    out.fill(pad, base + (padTop + ch) * W, base + plane);
    for (let y = padTop; y < padTop + ch; y++) {
      const row = base + y * W;
      if (padLeft > 0) out.fill(pad, row, row + padLeft);
      if (padLeft + cw < W) out.fill(pad, row + padLeft + cw, row + W);
    }
  }
}

function run(frame: RgbFrame, opts: ResizeOptions, plan: Plan, into?: Float32Array): Float32Array {
  const { width: W, height: H } = opts;
  const plane = W * H;
  const out = tensorFor(opts, into);
  const { meta, xs, ys } = plan;
  const { mean, scale } = opts;
  const bgr = opts.channelOrder === 'bgr';
  const rBase = bgr ? 2 * plane : 0;
  const gBase = plane;
  const bBase = bgr ? 0 : 2 * plane;
  const src = frame.data;
  const { contentWidth: cw, contentHeight: ch, padLeft, padTop } = meta;
  fillPadding(out, opts, meta);

  const { i0: x0, i1: x1, w: wx } = xs;
  for (let dy = 0; dy < ch; dy++) {
    const r0 = ys.i0[dy]!;
    const r1 = ys.i1[dy]!;
    const fy = ys.w[dy]!;
    const rowOut = (padTop + dy) * W + padLeft;
    for (let dx = 0; dx < cw; dx++) {
      const a = r0 + x0[dx]!;
      const b = r0 + x1[dx]!;
      const c = r1 + x0[dx]!;
      const d = r1 + x1[dx]!;
      const fx = wx[dx]!;
      const o = rowOut + dx;
      // Two lerps along x, one along y, per channel; unrolled because this loop is the whole cost.
      let t = src[a]! + (src[b]! - src[a]!) * fx;
      let u = src[c]! + (src[d]! - src[c]!) * fx;
      out[rBase + o] = (t + (u - t) * fy - mean) * scale;
      t = src[a + 1]! + (src[b + 1]! - src[a + 1]!) * fx;
      u = src[c + 1]! + (src[d + 1]! - src[c + 1]!) * fx;
      out[gBase + o] = (t + (u - t) * fy - mean) * scale;
      t = src[a + 2]! + (src[b + 2]! - src[a + 2]!) * fx;
      u = src[c + 2]! + (src[d + 2]! - src[c + 2]!) * fx;
      out[bBase + o] = (t + (u - t) * fy - mean) * scale;
    }
  }
  return out;
}

/** One-shot resize (builds the sampling tables each call); plugins use `createResizer`, which caches them. */
export function resizeToTensor(
  frame: RgbFrame,
  opts: ResizeOptions,
  into?: Float32Array,
): { tensor: Float32Array; meta: LetterboxMeta } {
  checkFrame(frame);
  const plan = makePlan(frame.width, frame.height, opts);
  return { tensor: run(frame, opts, plan, into), meta: plan.meta };
}

/**
 * The content is already at its input size (ffmpeg scaled it, or the frame is that size): one pass that
 * reorders packed rgb24 into planes and normalises; no sampling arithmetic.
 */
function convert(
  img: ScaledImage,
  opts: ResizeOptions,
  meta: LetterboxMeta,
  into?: Float32Array,
): Float32Array {
  const { width: W, height: H } = opts;
  const plane = W * H;
  const out = tensorFor(opts, into);
  const { contentWidth: cw, contentHeight: ch, padLeft, padTop } = meta;
  if (
    img.width !== cw ||
    img.height !== ch ||
    img.stride < cw * 3 ||
    img.data.length < (ch - 1) * img.stride + cw * 3
  )
    throw new RangeError(
      `scaled image ${img.width}x${img.height} (stride ${img.stride}, ${img.data.length} bytes) does not hold ${cw}x${ch} rgb24`,
    );
  fillPadding(out, opts, meta);
  const bgr = opts.channelOrder === 'bgr';
  const rBase = bgr ? 2 * plane : 0;
  const gBase = plane;
  const bBase = bgr ? 0 : 2 * plane;
  const src = img.data;
  const stride = img.stride;
  const { mean, scale } = opts;
  for (let y = 0; y < ch; y++) {
    let i = y * stride;
    const o0 = (padTop + y) * W + padLeft;
    // The resize loop's float64 expression at weight 0, so the stored float32 values are identical.
    for (let o = o0, end = o0 + cw; o < end; o++, i += 3) {
      out[rBase + o] = (src[i]! - mean) * scale;
      out[gBase + o] = (src[i + 1]! - mean) * scale;
      out[bBase + o] = (src[i + 2]! - mean) * scale;
    }
  }
  return out;
}

/** A resizer bound to one model input; `geometry` says where a frame of a given size lands in it. */
export interface Resizer {
  (frame: RgbFrame, into?: Float32Array): { tensor: Float32Array; meta: LetterboxMeta };
  readonly options: Readonly<ResizeOptions>;
  readonly geometry: (frameWidth: number, frameHeight: number) => LetterboxMeta;
}

/**
 * A resizer bound to one model input: keeps the sampling tables of the last frame size (a camera's size only
 * changes on reconfiguration, and cameras of different sizes sharing a model just rebuild a few KB).
 * A frame that carries its picture already scaled to this model's content size (`RgbFrame.scaled`), or that
 * is exactly that size, is only converted: with ffmpeg doing the scaling this is most of the per-frame cost.
 */
export function createResizer(opts: ResizeOptions): Resizer {
  let plan: Plan | undefined;
  const planFor = (w: number, h: number): Plan => {
    if (!plan || plan.meta.frameWidth !== w || plan.meta.frameHeight !== h) plan = makePlan(w, h, opts);
    return plan;
  };
  const resizer = (frame: RgbFrame, into?: Float32Array): { tensor: Float32Array; meta: LetterboxMeta } => {
    const { scaled } = frame;
    if (scaled) {
      checkSize(frame);
      const { meta } = planFor(frame.width, frame.height);
      if (scaled.width === meta.contentWidth && scaled.height === meta.contentHeight)
        return { tensor: convert(scaled, opts, meta, into), meta };
    }
    checkFrame(frame);
    const p = planFor(frame.width, frame.height);
    const { meta } = p;
    if (meta.contentWidth === frame.width && meta.contentHeight === frame.height) {
      // Bilinear at scale 1 samples every pixel exactly (weights 0): the same values without the arithmetic.
      const img = { data: frame.data, width: frame.width, height: frame.height, stride: frame.width * 3 };
      return { tensor: convert(img, opts, meta, into), meta };
    }
    return { tensor: run(frame, opts, p, into), meta };
  };
  return Object.assign(resizer, {
    options: Object.freeze({ ...opts }),
    geometry: (w: number, h: number) => letterboxMeta(w, h, opts),
  });
}

/** A point in model-input pixels -> normalised frame coordinates (not clamped: landmarks may sit outside). */
export function inputPointToFrame(meta: LetterboxMeta, x: number, y: number): Point {
  return { x: (x - meta.padLeft) / meta.contentWidth, y: (y - meta.padTop) / meta.contentHeight };
}

/** Corners in model-input pixels -> a normalised frame box, clamped to the frame (padding is cut off). */
export function inputBoxToFrame(meta: LetterboxMeta, x1: number, y1: number, x2: number, y2: number): Box {
  const a = inputPointToFrame(meta, x1, y1);
  const b = inputPointToFrame(meta, x2, y2);
  return clampBox({ x: a.x, y: a.y, w: b.x - a.x, h: b.y - a.y });
}
