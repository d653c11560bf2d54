/**
 * The jobs list: the model that pages through the server's list (and is what the
 * `ICellshipJobs` token hands other extensions), and its view, one keyed row per job
 * updated in place on every poll (no re-render of every row when one status changes),
 * durations of running jobs ticking locally.
 */
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { api, IClusterJob, IJobSummary, Status } from './api';
import { badge, button, el, formatDuration, formatTime, liveDuration, setBadge } from './dom';
import { ICellshipJobs, IJobChange } from './tokens';

const FILTER_DELAY_MS = 250; // typing a name asks the server once, not per key
/** The cluster is asked for its jobs at most this often (a poll of the store is cheap,
 * a list of the cluster's pods is not), and never holds the store's list back. */
const CLUSTER_MIN_MS = 5000;

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
  private cluster: IClusterJob[] = [];
  private reason: string | null = null;
  private clusterAsked = 0;
  private clusterInFlight = false;
  /** Whether the server lists cluster-only jobs (its `cluster_jobs` capability). */
  clusterEnabled = false;
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
  /** Jobs found in the cluster by label that this store lacks (submitted elsewhere),
   * matching the filters. */
  get clusterJobs(): ReadonlyArray<IClusterJob> {
    const name = this.nameFilter.toLowerCase();
    return name ? this.cluster.filter(job => job.name.toLowerCase().includes(name)) : this.cluster;
  }
  /** Why no cluster jobs are listed (no cluster configured, no answer); null when it answered. */
  get clusterReason(): string | null {
    return this.reason;
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
    if (status !== this.statusFilter) {
      this.clusterAsked = 0; // the cluster's list is filtered by status on the server
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

  /**
   * Ask the cluster for its jobs this store lacks, unless asked less than CLUSTER_MIN_MS
   * ago (or `force`); the list is emitted again once it answers. Never rejects: a cluster
   * that fails is a `clusterReason`, not a failed poll.
   */
  async loadCluster(force = false): Promise<void> {
    if (!this.clusterEnabled || this.clusterInFlight ||
        (!force && Date.now() - this.clusterAsked < CLUSTER_MIN_MS)) {
      return;
    }
    this.clusterInFlight = true;
    this.clusterAsked = Date.now();
    const status = this.statusFilter;
    try {
      const answer = await api.clusterJobs(status);
      if (status === this.statusFilter) {
        this.cluster = answer.cluster_jobs ?? [];
        this.reason = answer.cluster_reason ?? null;
      }
    } catch (error) {
      this.cluster = [];
      this.reason = `cluster jobs not listed: ${(error as Error).message ?? String(error)}`;
    } finally {
      this.clusterInFlight = false;
    }
    this.listed.emit(this.list);
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

/** One cluster-only job: marked `cluster`, its namespace, and a line per replica. */
function clusterRow(job: IClusterJob): HTMLTableRowElement {
  const tr = el('tr', 'cs-row cs-cluster-job-row');
  tr.dataset.jobId = job.id;
  tr.title = `${job.name} (${job.id}) in namespace ${job.namespace ?? '-'}: submitted from another kernel or machine`;
  const name = el('td', 'cs-name');
  name.append(
    el('span', 'cs-job-name', job.name),
    el('span', 'cs-origin', 'cluster'),
    el('span', 'cs-id', `${job.id}${job.namespace ? ` · ${job.namespace}` : ''}`)
  );
  const status = el('td');
  status.appendChild(badge(job.status ?? 'unknown'));
  const pods = el('td', 'cs-pods');
  const keys = Object.keys(job.pods);
  if (!keys.length) {
    pods.textContent = 'no pods';
  }
  for (const key of keys) {
    const pod = el('div', 'cs-pod');
    pod.dataset.replica = key;
    pod.dataset.phase = job.pods[key];
    const node = job.nodes?.[key] ?? null;
    pod.dataset.node = node ?? '';
    pod.append(
      el('span', 'cs-pod-replica', `${key}: `),
      el('span', 'cs-pod-phase', job.pods[key]),
      el('span', 'cs-pod-node', node ? ` on ${node}` : ' (not scheduled)')
    );
    pods.appendChild(pod);
  }
  const by = el('span', 'cs-line', 'by ');
  by.appendChild(el('span', 'cs-user', job.user ?? '–'));
  by.append(`, ${formatTime(job.created)}`);
  name.appendChild(by);
  tr.append(name, status, pods);
  return tr;
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
  private readonly clusterSection = el('div', 'cs-cluster-section');
  private readonly clusterBody = el('tbody');
  private readonly clusterNote = el('div', 'cs-cluster-reason');
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
    const clusterTable = el('table', 'cs-table cs-cluster-jobs-table');
    const clusterHead = el('tr');
    for (const title of ['Name', 'Status', 'Pods (node)']) {
      clusterHead.appendChild(el('th', '', title));
    }
    clusterTable.append(el('thead'), this.clusterBody);
    clusterTable.tHead!.appendChild(clusterHead);
    this.clusterSection.append(
      el('h4', 'cs-cluster-title', 'In the cluster only'),
      el('div', 'cs-cluster-hint', 'Submitted from another kernel or machine: found by label, not in this machine\'s job store (no logs here).'),
      clusterTable
    );
    this.clusterSection.hidden = true;
    this.clusterNote.hidden = true;
    this.node.append(bar, this.empty, table, this.moreButton, this.clusterSection, this.clusterNote);
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
    const cluster = this.model.clusterJobs;
    this.empty.hidden = total > 0 || cluster.length > 0;
    this.renderCluster(cluster);
  }

  /** The cluster-only jobs: rebuilt on each answer (a handful of rows, asked every few
   * seconds at most), each replica with its pod's phase and node. */
  private renderCluster(jobs: ReadonlyArray<IClusterJob>): void {
    this.clusterSection.hidden = jobs.length === 0;
    this.node.dataset.cluster = String(jobs.length);
    this.clusterBody.replaceChildren(...jobs.map(job => clusterRow(job)));
    const reason = this.model.clusterReason;
    this.clusterNote.hidden = reason === null;
    this.clusterNote.textContent = reason ?? '';
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
    const replicas = job.replicas
      .map(r => `${r.label}: ${r.state}${r.node ? ` on ${r.node}` : ''}`)
      .join(', ');
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
