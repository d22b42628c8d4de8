import { setFlagsFromString } from 'node:v8';

/*
 * Workaround for a V8 bug in Node 20 (V8 11.3) that killed the cloud under by-id read load (issue 20):
 *
 *   # Fatal error in , line 0 / # unreachable code
 *   v8::internal::Deoptimizer::DoComputeBuiltinContinuation / DoComputeOutputFrames
 *
 * TurboFan inlines the JS-to-Wasm wrapper of a wasm export into the optimized JS caller
 * (--turbo-inline-js-wasm-calls, on by default), and it does so for exports that take and return `externref`.
 * The Cedar engine (@cedar-policy/cedar-wasm, wasm-bindgen with reference types) is such an export:
 * `statefulIsAuthorized(externref) -> externref`. While the wasm code runs it calls back into JS (reading our
 * request objects); when something there invalidates the optimized caller's code (a map or feedback change:
 * "code dependencies"), the caller is deoptimized lazily, on return from wasm. The deoptimizer then rebuilds
 * the wasm call's result from the return register by its wasm type, and
 * Deoptimizer::TranslatedValueForWasmReturnKind (src/deoptimizer/deoptimizer.cc) handles i32, i64, f32 and f64
 * only: for a reference it reaches UNREACHABLE() and aborts the process. The decision cache made it likely at
 * the moment requests moved from cache hits (the authorizer optimized with the wasm call inlined, rarely run) to
 * misses (many engine calls, new shapes). cloud/test/v8-js-wasm-deopt.test.ts reproduces the abort with a
 * 46-byte wasm module and shows this flag removes it; the V8/Node issue trackers we could search have no
 * report of it.
 *
 * Turning the inlining off costs a call through the wasm export's wrapper (nanoseconds; a Cedar call is
 * 0.1-0.3 ms). `v8.setFlagsFromString` works after start for this flag because it is read when TurboFan
 * compiles, and this module is imported before the wasm engine is loaded or any caller is optimized. Remove it
 * once the Node in `engines` runs the test's repro clean without it.
 */
export const JS_WASM_INLINING_OFF = '--no-turbo-inline-js-wasm-calls';

let applied = false;

/** Applies {@link JS_WASM_INLINING_OFF} to this process (once). */
export function disableJsToWasmInlining(): void {
  if (applied) return;
  setFlagsFromString(JS_WASM_INLINING_OFF);
  applied = true;
}

disableJsToWasmInlining();
