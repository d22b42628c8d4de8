/*
 * Escaping by construction: every page is built with the `html` tagged template, which escapes every
 * interpolated value unless it is itself SafeHtml made by `html`. There is no other way to make SafeHtml (no
 * "raw" helper), so a device name, label or claim can never become markup.
 */

const SAFE = Symbol('vigil.console.safeHtml');

/** Markup made by {@link html}; its text is already escaped. */
export interface SafeHtml {
  readonly [SAFE]: true;
  readonly text: string;
}

/** One interpolated value: text (escaped), a number, SafeHtml, a list of those, or nothing (null/undefined/false). */
export type HtmlValue = string | number | bigint | SafeHtml | null | undefined | false | readonly HtmlValue[];

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/** Escapes text for element content and quoted attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

function isSafe(v: unknown): v is SafeHtml {
  return typeof v === 'object' && v !== null && (v as Partial<SafeHtml>)[SAFE] === true;
}

function render(v: HtmlValue): string {
  if (v === null || v === undefined || v === false) return '';
  if (typeof v === 'string') return escapeHtml(v);
  if (typeof v === 'number' || typeof v === 'bigint') return escapeHtml(v.toString());
  if (isSafe(v)) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  // Reachable only past the type system (a look-alike object): text, never markup.
  return escapeHtml(Object.prototype.toString.call(v));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return { [SAFE]: true, text: out };
}
