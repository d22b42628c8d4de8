import { performance, monitorEventLoopDelay } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { loadModel, loadModelPool, type LoadedModel } from '../src/detect/index.js';
const A = '/work/wt/shared/assets';
const frame = execFileSync('ffmpeg', ['-hide_banner','-loglevel','error','-ss','10','-i',`${A}/videos/one-by-one-person-detection.mp4`,'-frames:v','1','-vf','scale=640:360:flags=fast_bilinear','-pix_fmt','rgb24','-f','rawvideo','pipe:1'], { maxBuffer: 1<<24 });
const rgb = { data: frame, width: 640, height: 360 };
async function measure(label: string, m: LoadedModel, callers: number, s: number) {
  for (let i = 0; i < 5; i++) await m.detect(rgb);
  const h = monitorEventLoopDelay({ resolution: 5 }); h.enable();
  let n = 0; const pre: number[] = []; const inf: number[] = [];
  const end = performance.now() + s * 1000; const t0 = performance.now();
  await Promise.all(Array.from({ length: callers }, async () => { while (performance.now() < end) { const r = await m.detect(rgb); n++; pre.push(r.preprocessMs); inf.push(r.inferenceMs); } }));
  h.disable();
  const med = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1]!.toFixed(2);
  console.log(label, 'callers', callers, 'runs/s', (n / ((performance.now() - t0) / 1000)).toFixed(1), 'pre', med(pre), 'inf', med(inf), 'loopDelay p99 ms', (h.percentile(99) / 1e6).toFixed(1), 'max', (h.max / 1e6).toFixed(1));
  await m.dispose();
}
for (const [type, file] of [['fastestdet', 'FastestDet.onnx'], ['yolox', 'yolox_nano.onnx']] as const) {
  const spec = { name: type, type, path: `${A}/models/${file}` };
  await measure(`${type} main t1`, await loadModel(spec), 1, 4);
  await measure(`${type} main t2`, await loadModel({ ...spec, threads: 2 }), 1, 4);
  await measure(`${type} pool w1`, await loadModelPool(spec, 1), 1, 4);
  await measure(`${type} pool w2 x2`, await loadModelPool(spec, 2), 2, 4);
  await measure(`${type} main t1 x2`, await loadModel(spec), 2, 4);
}
