import { toProblem, type ProblemDetails } from '../api/problem.js';
import { html, type HtmlValue, type SafeHtml } from './html.js';

/**
 * A request the API refused for a reason the user can fix (400, 409, 422), shown next to the form that sent it:
 * the problem's detail, and each issue at the form field it names (the form keeps what was typed).
 */
export interface Refusal<F extends string> {
  detail: string;
  fields: Partial<Record<F, string>>;
  /** Issues no form field stands for, as `path: message`. */
  other: string[];
}

/** The problem details of a refusal the user can fix, or undefined (403, 404, 5xx: the error page). */
export function fixableProblem(err: unknown, path: string): ProblemDetails | undefined {
  const { problem } = toProblem(err, path);
  return [400, 409, 422].includes(problem.status) ? problem : undefined;
}

/** The refusal of `problem`, its issues sorted to the fields `fieldOf` maps their body paths to. */
export function refusalOf<F extends string>(
  problem: ProblemDetails,
  fieldOf: (path: string) => F | undefined,
): Refusal<F> {
  const fields: Partial<Record<F, string>> = {};
  const other: string[] = [];
  for (const i of problem.errors ?? []) {
    const f = fieldOf(i.path);
    if (f === undefined) other.push(`${i.path}: ${i.message}`);
    else fields[f] = fields[f] === undefined ? i.message : `${fields[f]}; ${i.message}`;
  }
  return { detail: problem.detail ?? problem.title, fields, other };
}

/**
 * The refusal box (role=alert: read out when the page loads): the detail, `extra` (e.g. a link to what is in
 * the way), and each named field linked to its input (`f-<field>`).
 */
export function refusalBox<F extends string>(
  r: Refusal<F>,
  id: string,
  labels: Readonly<Record<F, string>>,
  extra?: HtmlValue,
): SafeHtml {
  const named = (Object.keys(r.fields) as F[]).map(
    (f) => html`<li><a href="#f-${f}">${labels[f]}</a>: ${r.fields[f] ?? ''}</li>`,
  );
  return html`<div role="alert" class="error refusal" id="${id}">
    <p>${r.detail}</p>
    ${extra}
    ${
      named.length + r.other.length > 0
        ? html`<ul>
            ${named} ${r.other.map((o) => html`<li>${o}</li>`)}
          </ul>`
        : ''
    }
  </div>`;
}

/**
 * What a form field needs when a refusal names it: `id`, aria-invalid and aria-describedby for the input,
 * and the message to put right under it (`e-<field>`).
 */
export function fieldMarks<F extends string>(
  refusal: Refusal<F> | undefined,
  f: F,
): { attrs: SafeHtml; note: SafeHtml } {
  const m = refusal?.fields[f];
  return m === undefined
    ? { attrs: html`id="f-${f}"`, note: html`` }
    : {
        attrs: html`id="f-${f}" aria-invalid="true" aria-describedby="e-${f}"`,
        note: html`<span class="field-error" id="e-${f}">${m}</span>`,
      };
}
