/**
 * The jobs list: one keyed row per job, updated in place on every poll (no re-render of
 * a thousand rows when one status changes), durations of running jobs ticking locally.
 */
import { IJobSummary } from './api';
import { badge, el, formatDuration, formatTime, liveDuration, setBadge } from './dom';

interface IRow {
  tr: HTMLTableRowElement;
  badge: HTMLSpanElement;
  workers: HTMLTableCellElement;
  duration: HTMLTableCellElement;
  job: IJobSummary;
}

function topology(job: IJobSummary): string {
  const workers = job.workers ?? job.replicas.length;
  let text = `${workers} worker${workers === 1 ? '' : 's'}`;
  if (job.ps) {
    text += ` + ${job.ps} ps`;
  }
  return text;
}

export class JobsView {
  readonly node = el('div', 'cs-view cs-jobs');
  private readonly filter = el('input', 'jp-mod-styled cs-filter');
  private readonly statusFilter = el('select', 'jp-mod-styled cs-status-filter');
  private readonly count = el('span', 'cs-count');
  private readonly tbody = el('tbody');
  private readonly empty = el('div', 'cs-empty');
  private readonly rows = new Map<string, IRow>();
  private jobs: IJobSummary[] = [];

  constructor(private readonly onOpen: (id: string) => void) {
    const bar = el('div', 'cs-toolbar');
    this.filter.placeholder = 'Filter by name or id';
    this.filter.setAttribute('aria-label', 'Filter jobs');
    this.filter.addEventListener('input', () => this.render());
    for (const status of ['', 'pending', 'running', 'succeeded', 'failed', 'cancelled']) {
      const option = el('option', '', status || 'all statuses');
      option.value = status;
      this.statusFilter.appendChild(option);
    }
    this.statusFilter.addEventListener('change', () => this.render());
    bar.append(this.filter, this.statusFilter, this.count);
    const table = el('table', 'cs-table cs-jobs-table');
    const head = el('tr');
    for (const title of ['Name', 'Status', 'Workers', 'Duration', 'Created']) {
      head.appendChild(el('th', '', title));
    }
    table.append(el('thead'), this.tbody);
    table.tHead!.appendChild(head);
    this.empty.textContent = 'No jobs yet: run a cell with %%train, or `cellship train FILE.py`.';
    this.node.append(bar, this.empty, table);
  }

  update(jobs: IJobSummary[]): void {
    this.jobs = jobs;
    this.render();
  }

  /** Advance the durations of running jobs between polls. */
  tick(): void {
    for (const row of this.rows.values()) {
      if (row.job.status === 'running' || row.job.status === 'pending') {
        row.duration.textContent = formatDuration(
          liveDuration(row.job.started, row.job.ended, row.job.status)
        );
      }
    }
  }

  private visible(): IJobSummary[] {
    const text = this.filter.value.trim().toLowerCase();
    const status = this.statusFilter.value;
    return this.jobs.filter(
      job =>
        (!status || job.status === status) &&
        (!text || job.name.toLowerCase().includes(text) || job.id.startsWith(text))
    );
  }

  private render(): void {
    const shown = this.visible();
    const keep = new Set(shown.map(job => job.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    const fragment = document.createDocumentFragment();
    let previous: HTMLTableRowElement | null = null;
    let inOrder = true;
    for (const job of shown) {
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.createRow(job);
        this.rows.set(job.id, row);
        inOrder = false;
      } else {
        this.updateRow(row, job);
        if (inOrder && row.tr.previousElementSibling !== previous) {
          inOrder = false;
        }
      }
      previous = row.tr;
      fragment.appendChild(row.tr);
    }
    if (!inOrder || this.tbody.childElementCount !== shown.length) {
      this.tbody.appendChild(fragment); // moves existing rows: order = newest first
    }
    this.count.textContent =
      shown.length === this.jobs.length
        ? `${this.jobs.length} jobs`
        : `${shown.length} of ${this.jobs.length} jobs`;
    this.empty.hidden = this.jobs.length > 0;
  }

  private createRow(job: IJobSummary): IRow {
    const tr = el('tr', 'cs-row cs-job-row');
    tr.tabIndex = 0;
    tr.dataset.jobId = job.id;
    const name = el('td', 'cs-name');
    name.append(el('span', 'cs-job-name', job.name), el('span', 'cs-id', job.id));
    const status = el('td');
    const statusBadge = badge(job.status);
    status.appendChild(statusBadge);
    const workers = el('td', 'cs-workers', topology(job));
    const duration = el(
      'td',
      'cs-duration',
      formatDuration(liveDuration(job.started, job.ended, job.status))
    );
    const created = el('td', 'cs-created', formatTime(job.created));
    tr.append(name, status, workers, duration, created);
    tr.addEventListener('click', () => this.onOpen(job.id));
    tr.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        this.onOpen(job.id);
      }
    });
    return { tr, badge: statusBadge, workers, duration, job };
  }

  private updateRow(row: IRow, job: IJobSummary): void {
    if (row.job.status !== job.status) {
      setBadge(row.badge, job.status);
    }
    const replicas = job.replicas.map(r => `${r.label}: ${r.state}`).join(', ');
    if (row.tr.title !== replicas) {
      row.tr.title = replicas;
    }
    row.job = job;
    row.duration.textContent = formatDuration(liveDuration(job.started, job.ended, job.status));
  }
}
