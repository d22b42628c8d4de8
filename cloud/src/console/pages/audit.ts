import type { Router } from 'express';
import { parseOrThrow } from '../../api/events-query.js';
import { listAuditQuerySchema } from '../../audit/routes.js';
import { nonEmptyQuery, requirePage, sendPage, utcInput, type PageDeps } from '../context.js';
import { html } from '../html.js';
import { time } from '../layout.js';
import { consolePrincipal } from '../security.js';

const PAGE = 50;

/**
 * GET /console/audit: the tenant's audit log (filters, keyset pages by seq) as GET /v1/audit-log reads it (the
 * same `audit:read` decision), and on request the chain verification (AuditLog.verify: the whole chain,
 * every tenant's entries, so only its verdict is shown).
 */
export function mountAuditPage(router: Router, deps: PageDeps): void {
  const query = listAuditQuerySchema(Math.max(deps.maxPageSize, PAGE));
  router.get('/audit', async (req, res) => {
    const principal = consolePrincipal(res);
    const raw = nonEmptyQuery(req.query);
    const { verify, ...rest } = raw;
    const since = utcInput(rest.since);
    const until = utcInput(rest.until);
    const q = parseOrThrow(
      query,
      { ...rest, ...(since ? { since } : {}), ...(until ? { until } : {}) },
      'query parameters',
    );
    await requirePage(res, deps, 'audit');
    let sel = deps.db.selectFrom('audit_log').selectAll().where('tenant_id', '=', principal.tenant);
    if (q.action !== undefined) sel = sel.where('action', '=', q.action);
    if (q.actor !== undefined) sel = sel.where('actor', '=', q.actor);
    if (q.outcome !== undefined) sel = sel.where('outcome', '=', q.outcome);
    if (q.since !== undefined) sel = sel.where('at', '>=', new Date(q.since));
    if (q.until !== undefined) sel = sel.where('at', '<', new Date(q.until));
    if (q.cursor !== undefined) sel = sel.where('seq', '<', q.cursor);
    const rows = await sel
      .orderBy('seq', 'desc')
      .limit(PAGE + 1)
      .execute();
    const page = rows.slice(0, PAGE);
    const next = new URLSearchParams(rest);
    if (rows.length > PAGE) next.set('cursor', String(page[page.length - 1]!.seq));
    let verdict = html`<p>
      Chain not verified on this view. <a href="/console/audit?verify=1">Verify the chain</a>
    </p>`;
    if (verify === '1') {
      const r = await deps.audit.verify();
      verdict = r.firstBroken
        ? html`<p role="alert" class="error" data-chain="broken">
            Chain BROKEN at entry ${String(r.firstBroken.seq)}: ${r.firstBroken.reason}
          </p>`
        : html`<p class="ok" data-chain="intact">
            Chain intact: ${r.checked} entries checked, head
            ${r.head ? r.head.hash.toString('hex').slice(0, 16) : '—'}….
          </p>`;
    }
    const field = (name: string, label: string, value: string | undefined, type = 'text') =>
      html`<label
        >${label} <input name="${name}" type="${type}" value="${value ?? ''}" maxlength="256"
      /></label>`;
    const body = html`
      ${verdict}
      <form
        method="get"
        action="/console/audit"
        class="filters"
        role="search"
        aria-label="Filter the audit log"
      >
        ${field('action', 'Action', q.action)} ${field('actor', 'Actor', q.actor)}
        <label
          >Outcome
          <select name="outcome">
            <option value="">any</option>
            ${(['allowed', 'denied', 'failed'] as const).map(
              (o) => html`<option ${o === q.outcome ? html`selected` : ''}>${o}</option>`,
            )}
          </select></label
        >
        ${field('since', 'From (UTC)', raw.since, 'datetime-local')}
        ${field('until', 'Until (UTC)', raw.until, 'datetime-local')}
        <button type="submit">Filter</button>
      </form>
      <div class="table-wrap" tabindex="0" role="region" aria-label="Audit entries">
        <table id="audit">
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">Time (UTC)</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Resource</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            ${page.map(
              (r) =>
                html`<tr data-action="${r.action}">
                  <td>${String(r.seq)}</td>
                  <td>${time(r.at)}</td>
                  <td>${r.actor}</td>
                  <td>${r.action}</td>
                  <td>${r.resource ?? '—'}</td>
                  <td>${r.outcome}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${page.length === 0 ? html`<p>No entry matches.</p>` : ''}
      ${rows.length > PAGE ? html`<p><a href="/console/audit?${next.toString()}" rel="next">Older entries</a></p>` : ''}
    `;
    await sendPage(res, deps, 'audit', 'Audit log', body);
  });
}
