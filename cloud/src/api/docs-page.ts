/*
 * GET /v1/docs: the OpenAPI document rendered on the server as one self-contained HTML page: no scripts, no
 * fonts or styles from elsewhere (the page must work offline, and its Content-Security-Policy forbids them).
 */

type Json = Record<string, unknown>;

/** For GET /v1/docs: nothing loads but this page and its inline style. */
export const DOCS_CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 1.5rem;color:#1b1f24}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.2rem}
section.op{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.method{display:inline-block;min-width:4.2rem;font-weight:700;font-family:ui-monospace,monospace}
.get{color:#0969da}.post{color:#1a7f37}.patch,.put{color:#9a6700}.delete{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f6f8fa;padding:.6rem;overflow:auto}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
details{margin:.4rem 0}summary{cursor:pointer}nav ul{columns:2}
`;

function esc(value: unknown): string {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** Inline `code` only; everything else is escaped text with paragraphs. */
function prose(text: unknown): string {
  if (typeof text !== 'string' || text === '') return '';
  return text
    .split(/\n{2,}/)
    .map((p) => `<p>${esc(p).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`)
    .join('');
}

function resolve(doc: Json, value: unknown): Json {
  const ref = (value as { $ref?: unknown } | null)?.$ref;
  if (typeof ref !== 'string' || !ref.startsWith('#/')) return (value ?? {}) as Json;
  let node: unknown = doc;
  for (const part of ref.slice(2).split('/')) node = (node as Json | undefined)?.[part];
  return (node ?? {}) as Json;
}

function schemaSummary(schema: Json): string {
  const ref = schema.$ref;
  if (typeof ref === 'string') {
    const name = ref.split('/').pop() ?? ref;
    return `<a href="#schema-${esc(name)}">${esc(name)}</a>`;
  }
  const bits: string[] = [];
  const type = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type;
  if (type !== undefined) bits.push(esc(type));
  if (Array.isArray(schema.enum))
    bits.push(`one of ${schema.enum.map((v) => `<code>${esc(v)}</code>`).join(', ')}`);
  for (const k of ['format', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'default'])
    if (schema[k] !== undefined) bits.push(`${k} <code>${esc(schema[k])}</code>`);
  return bits.join(', ');
}

function pre(value: unknown): string {
  return `<pre>${esc(JSON.stringify(value, null, 2))}</pre>`;
}

function renderOperation(doc: Json, path: string, method: string, op: Json): string {
  const id = esc(op.operationId);
  const out: string[] = [
    `<section class="op" id="${id}"><h3><span class="method ${esc(method)}">${esc(method.toUpperCase())}</span> ` +
      `<code>${esc(path)}</code> — ${esc(op.summary)}</h3>`,
    prose(op.description),
  ];
  const params = ((op.parameters ?? []) as unknown[]).map((p) => resolve(doc, p));
  if (params.length > 0) {
    out.push(
      '<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th>description</th></tr>',
    );
    for (const p of params)
      out.push(
        `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required === true ? 'yes' : 'no'}</td>` +
          `<td>${schemaSummary((p.schema ?? {}) as Json)}</td><td>${prose(p.description)}</td></tr>`,
      );
    out.push('</table>');
  }
  const body = op.requestBody as Json | undefined;
  if (body) {
    const content = (body.content ?? {}) as Record<string, Json>;
    for (const [type, media] of Object.entries(content))
      out.push(
        `<details open><summary>Request body (<code>${esc(type)}</code>)</summary>${pre(media.schema)}</details>`,
      );
  }
  out.push('<table><tr><th>status</th><th>response</th><th>content</th></tr>');
  for (const [status, raw] of Object.entries((op.responses ?? {}) as Record<string, unknown>)) {
    const r = resolve(doc, raw);
    const content = Object.entries((r.content ?? {}) as Record<string, Json>)
      .map(([type, media]) => `<code>${esc(type)}</code> ${schemaSummary((media.schema ?? {}) as Json)}`)
      .join('<br>');
    out.push(`<tr><td>${esc(status)}</td><td>${prose(r.description)}</td><td>${content}</td></tr>`);
  }
  out.push('</table></section>');
  return out.join('\n');
}

/** The whole page for `doc` (an OpenAPI 3.1 document from api/openapi.ts). */
export function renderDocsPage(doc: Json): string {
  const info = (doc.info ?? {}) as Json;
  const paths = (doc.paths ?? {}) as Record<string, Record<string, Json>>;
  const byTag = new Map<string, string[]>();
  const toc: string[] = [];
  for (const [path, item] of Object.entries(paths))
    for (const [method, op] of Object.entries(item)) {
      const first = (op.tags as unknown[] | undefined)?.[0];
      const tag = typeof first === 'string' ? first : 'Other';
      const list = byTag.get(tag) ?? [];
      list.push(renderOperation(doc, path, method, op));
      byTag.set(tag, list);
      toc.push(`<li><a href="#${esc(op.operationId)}">${esc(method.toUpperCase())} ${esc(path)}</a></li>`);
    }
  const tagDocs = new Map(
    ((doc.tags ?? []) as Json[]).map((t) => [
      String(t.name),
      typeof t.description === 'string' ? t.description : '',
    ]),
  );
  const sections = [...byTag].map(
    ([tag, ops]) => `<h2>${esc(tag)}</h2>${prose(tagDocs.get(tag))}\n${ops.join('\n')}`,
  );
  const schemas = Object.entries(
    ((doc.components as Json | undefined)?.schemas ?? {}) as Record<string, unknown>,
  ).map(
    ([name, s]) =>
      `<details id="schema-${esc(name)}"><summary><code>${esc(name)}</code></summary>${pre(s)}</details>`,
  );
  return (
    `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(info.title)} ${esc(info.version)}</title><style>${STYLE}</style></head>
<body><h1>${esc(info.title)}</h1><p>Version ${esc(info.version)}, OpenAPI ${esc(doc.openapi)}. ` +
    `Machine-readable: <a href="openapi.json">openapi.json</a>.</p>${prose(info.description)}
<nav><ul>${toc.join('')}</ul></nav>
${sections.join('\n')}
<h2>Schemas</h2>
${schemas.join('\n')}
</body></html>
`
  );
}
