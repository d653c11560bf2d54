/**
 * The jobs list: the model that pages through the server's list (and is what the
 * `ICellshipJobs` token hands other extensions), and its view, one keyed row per job
 * updated in place on every poll (no re-render of every row when one status changes),
 * durations of running jobs ticking locally.
 */
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { api, IJobSummary, Status } from './api';
import { badge, button, el, formatDuration, formatTime, liveDuration, setBadge } from './dom';
import { ICellshipJobs, IJobChange } from './tokens';

const FILTER_DELAY_MS = 250; // typing a name asks the server once, not per key

/**
 * The first `pages` pages of the jobs matching the filters, newest first. Filters apply
 * on the server, so a filter finds jobs beyond the loaded pages too.
 */
export class JobsModel implements ICellshipJobs {
  pageSize = 50;
  private pages = 1;
  private statusFilter: Status | '' = '';
  private nameFilter = '';
  private list: IJobSummary[] = [];
  private more = false;
  private storeTotal = 0;
  private loaded = false;
  private requestSeq = 0;
  private appliedSeq = 0;
  private readonly statuses = new Map<string, Status>();
  private readonly changed = new Signal<ICellshipJobs, IJobChange>(this);
  private readonly listed = new Signal<ICellshipJobs, ReadonlyArray<IJobSummary>>(this);
  /** Set by the panel: poll now (its Poll, so backoff and standby stay in one place). */
  requestRefresh: () => Promise<void> = () => this.load();

  get jobs(): ReadonlyArray<IJobSummary> {
    return this.list;
  }
  get jobChanged(): ISignal<ICellshipJobs, IJobChange> {
    return this.changed;
  }
  get listChanged(): ISignal<ICellshipJobs, ReadonlyArray<IJobSummary>> {
    return this.listed;
  }
  /** Whether the server has jobs past the loaded pages. */
  get hasMore(): boolean {
    return this.more;
  }
  /** Jobs in the store, unfiltered. */
  get total(): number {
    return this.storeTotal;
  }
  get isLoaded(): boolean {
    return this.loaded;
  }
  get filtered(): boolean {
    return !!(this.statusFilter || this.nameFilter);
  }

  refresh(): Promise<void> {
    return this.requestRefresh();
  }

  setFilters(status: Status | '', name: string): void {
    if (status === this.statusFilter && name === this.nameFilter) {
      return;
    }
    this.statusFilter = status;
    this.nameFilter = name;
    this.pages = 1;
    void this.refresh();
  }

  showMore(): void {
    this.pages += 1;
    void this.refresh();
  }

  /** Fetch the loaded pages again (one request: offset 0, every loaded page at once). */
  async load(): Promise<void> {
    const limit = this.pageSize * this.pages;
    const seq = ++this.requestSeq;
    // One job more than shown tells whether there is a next page without a count query.
    const answer = await api.jobs({
      limit: limit + 1,
      status: this.statusFilter,
      name: this.nameFilter
    });
    if (seq < this.appliedSeq) {
      return; // a later request answered first: this one is stale
    }
    this.appliedSeq = seq;
    this.more = answer.jobs.length > limit;
    this.list = answer.jobs.slice(0, limit);
    this.storeTotal = answer.total;
    const firstLoad = !this.loaded;
    this.loaded = true;
    for (const job of this.list) {
      const previous = this.statuses.get(job.id) ?? null;
      if (previous !== job.status) {
        this.statuses.set(job.id, job.status);
        // The first poll reports nothing: every job would look new.
        if (!firstLoad) {
          this.changed.emit({ job, previous });
        }
      }
    }
    this.listed.emit(this.list);
  }

  dispose(): void {
    Signal.clearData(this);
  }
}

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

export class JobsView extends Widget {
  private readonly filter = el('input', 'jp-mod-styled cs-filter');
  private readonly statusFilter = el('select', 'jp-mod-styled cs-status-filter');
  private readonly count = el('span', 'cs-count');
  private readonly tbody = el('tbody');
  private readonly empty = el('div', 'cs-empty');
  private readonly moreButton: HTMLButtonElement;
  private readonly rows = new Map<string, IRow>();
  private filterTimer: number | undefined;

  constructor(
    private readonly model: JobsModel,
    private readonly onOpen: (id: string) => void
  ) {
    super();
    this.addClass('cs-view');
    this.addClass('cs-jobs');
    const bar = el('div', 'cs-toolbar');
    this.filter.placeholder = 'Filter by name';
    this.filter.setAttribute('aria-label', 'Filter jobs');
    this.filter.addEventListener('input', () => {
      window.clearTimeout(this.filterTimer);
      this.filterTimer = window.setTimeout(() => this.applyFilters(), FILTER_DELAY_MS);
    });
    for (const status of ['', 'pending', 'running', 'succeeded', 'failed', 'cancelled']) {
      const option = el('option', '', status || 'all statuses');
      option.value = status;
      this.statusFilter.appendChild(option);
    }
    this.statusFilter.addEventListener('change', () => this.applyFilters());
    bar.append(this.filter, this.statusFilter, this.count);
    const table = el('table', 'cs-table cs-jobs-table');
    const head = el('tr');
    for (const title of ['Name', 'Status', 'User', 'Workers', 'Duration', 'Created']) {
      head.appendChild(el('th', '', title));
    }
    table.append(el('thead'), this.tbody);
    table.tHead!.appendChild(head);
    this.empty.textContent = 'No jobs yet: run a cell with %%train, or `cellship train FILE.py`.';
    this.empty.hidden = true;
    this.moreButton = button(
      'Show more',
      'Load the next page of jobs',
      () => this.model.showMore(),
      'cs-more'
    );
    this.moreButton.hidden = true;
    this.node.append(bar, this.empty, table, this.moreButton);
    model.listChanged.connect(this.render, this);
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

  protected onBeforeDetach(msg: Message): void {
    window.clearTimeout(this.filterTimer);
    super.onBeforeDetach(msg);
  }

  private applyFilters(): void {
    this.model.setFilters(this.statusFilter.value as Status | '', this.filter.value.trim());
  }

  private render(): void {
    const shown = this.model.jobs;
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
    const total = this.model.total;
    this.count.textContent =
      this.model.hasMore || this.model.filtered
        ? `${shown.length} of ${total} jobs`
        : `${shown.length} jobs`;
    this.node.dataset.shown = String(shown.length);
    this.node.dataset.total = String(total);
    this.moreButton.hidden = !this.model.hasMore;
    this.moreButton.textContent = `Show ${this.model.pageSize} more`;
    this.empty.hidden = total > 0;
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
    const user = el('td', 'cs-user', job.user ?? '–');
    const workers = el('td', 'cs-workers', topology(job));
    const duration = el(
      'td',
      'cs-duration',
      formatDuration(liveDuration(job.started, job.ended, job.status))
    );
    const created = el('td', 'cs-created', formatTime(job.created));
    tr.append(name, status, user, workers, duration, created);
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

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this.filterTimer);
    this.model.listChanged.disconnect(this.render, this);
    super.dispose();
  }
}
