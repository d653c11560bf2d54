/**
 * One job: replica states, a live log tail (server-sent events read with an
 * authenticated fetch, resumed from the last line after a reconnect or while the panel
 * was hidden), metric sparklines, and the actions a user wants on it.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { api, CellshipAPIError, IJob, ILogLine, IMetricSeries, IServerEvent, streamEvents } from './api';
import {
  badge,
  button,
  el,
  formatDuration,
  formatTime,
  formatValue,
  liveDuration,
  setBadge,
  sparkline
} from './dom';

export interface IDetailContext {
  commands: CommandRegistry;
  maxLogLines: number;
  onBack: () => void;
  onChanged: () => void;
}

const RECONNECT_MS = 2000; // the server's `retry:`; doubled per failure up to the max
const RECONNECT_MAX_MS = 30_000;

export class JobDetailView extends Widget {
  private readonly titleNode = el('h3', 'cs-detail-title');
  private readonly statusBadge = badge('pending');
  private readonly facts = el('div', 'cs-facts');
  private readonly error = el('pre', 'cs-error');
  private readonly replicas = el('tbody');
  private readonly metrics = el('div', 'cs-metrics');
  private readonly logs = el('pre', 'cs-logs');
  private readonly cancelButton: HTMLButtonElement;
  private readonly deleteButton: HTMLButtonElement;
  private readonly tbLink = el('a', 'cs-tb-link');
  private job: IJob | null = null;
  /** Aborts the log request in flight; null while no stream runs. */
  private stream: AbortController | null = null;
  /** The server's cursor (last event id): where a new stream resumes. */
  private logCursor: string | null = null;
  private logsEnded = false;
  private logsStarted = false;
  private metricsDone = false;

  constructor(
    readonly jobId: string,
    private readonly context: IDetailContext
  ) {
    super();
    this.addClass('cs-view');
    this.addClass('cs-job-detail');
    const header = el('div', 'cs-detail-header');
    header.append(
      button('← Jobs', 'Back to the jobs list', () => context.onBack(), 'cs-back'),
      this.titleNode,
      this.statusBadge
    );
    this.cancelButton = button('Cancel', 'Cancel the job and stop every process of it', () =>
      void this.cancel(), 'cs-cancel jp-mod-warn'
    );
    this.deleteButton = button('Delete', 'Forget the job and remove its directory', () =>
      void this.remove(), 'cs-delete'
    );
    const actions = el('div', 'cs-actions');
    actions.append(
      this.cancelButton,
      button('TensorBoard', 'Start (or reuse) TensorBoard over this job', () =>
        void this.tensorboard(), 'cs-tensorboard'
      ),
      button('Output folder', 'Open the job\'s output folder in the file browser', () =>
        void this.openOutput(), 'cs-output'
      ),
      this.deleteButton
    );
    this.tbLink.target = '_blank';
    this.tbLink.rel = 'noopener noreferrer';
    this.tbLink.hidden = true;
    const replicaTable = el('table', 'cs-table cs-replicas');
    const head = el('tr');
    for (const column of ['Replica', 'State', 'Exit', 'PID', 'Restarts', 'Pod', 'Node']) {
      head.appendChild(el('th', column === 'Pod' || column === 'Node' ? 'cs-kube-column' : '', column));
    }
    replicaTable.append(el('thead'), this.replicas);
    replicaTable.tHead!.appendChild(head);
    this.error.hidden = true;
    this.titleNode.textContent = jobId;
    this.node.append(
      header,
      actions,
      this.tbLink,
      this.facts,
      this.error,
      el('h4', '', 'Replicas'),
      replicaTable,
      el('h4', '', 'Metrics'),
      this.metrics,
      el('h4', '', 'Logs'),
      this.logs
    );
    this.metrics.textContent = 'No scalars yet.';
  }

  setJob(job: IJob): void {
    this.job = job;
    this.titleNode.textContent = job.name;
    this.titleNode.title = `${job.name} (${job.id})`;
    setBadge(this.statusBadge, job.status);
    const done = ['succeeded', 'failed', 'cancelled'].includes(job.status);
    this.cancelButton.disabled = done;
    this.deleteButton.disabled = !done;
    this.facts.replaceChildren();
    const topo = `${job.workers ?? job.replicas.length} worker(s)` + (job.ps ? ` + ${job.ps} ps` : '');
    for (const [label, value] of [
      ['id', job.id],
      ['backend', job.backend],
      ['topology', topo],
      ['duration', formatDuration(liveDuration(job.started, job.ended, job.status))],
      ['created', formatTime(job.created)],
      ['restarts', String(job.restarts)],
      ['output', job.output_dir]
    ]) {
      const row = el('div', 'cs-fact');
      row.append(el('span', 'cs-fact-label', label), el('span', `cs-fact-value cs-fact-${label}`, value));
      this.facts.appendChild(row);
    }
    this.error.hidden = !job.error;
    this.error.textContent = job.error ?? '';
    this.replicas.replaceChildren(
      ...job.replicas.map(r => {
        const tr = el('tr', 'cs-replica');
        tr.dataset.replica = r.key;
        const state = el('td');
        state.appendChild(badge(r.state));
        tr.append(
          el('td', '', r.label),
          state,
          el('td', '', r.exit_code === null ? '' : String(r.exit_code)),
          el('td', '', r.pid === null ? '' : String(r.pid)),
          el('td', '', String(r.restarts)),
          el('td', 'cs-kube-column cs-replica-pod', r.pod ?? ''),
          el('td', 'cs-kube-column cs-replica-node', r.node ?? (r.pod ? 'not scheduled' : ''))
        );
        const tip = [r.pod ? `pod ${r.pod}` : '', r.diagnosis ?? ''].filter(Boolean).join('\n');
        if (tip) {
          tr.title = tip;
        }
        return tr;
      })
    );
    // Pod and node columns only for jobs with pods (Kubernetes), not for local replicas.
    this.node.classList.toggle('cs-mod-kube', job.replicas.some(r => !!r.pod));
    if (!this.logsStarted) {
      this.logsStarted = true;
      this.startLogs();
    }
  }

  tick(): void {
    const job = this.job;
    if (job && (job.status === 'running' || job.status === 'pending')) {
      const cell = this.facts.querySelector('.cs-fact-duration');
      if (cell) {
        cell.textContent = formatDuration(liveDuration(job.started, job.ended, job.status));
      }
    }
  }

  /** Whether metrics still need fetching (always while running; once after the end). */
  get wantsMetrics(): boolean {
    return !this.metricsDone;
  }

  updateMetrics(series: IMetricSeries[]): void {
    if (this.job && ['succeeded', 'failed', 'cancelled'].includes(this.job.status)) {
      this.metricsDone = true;
    }
    if (!series.length) {
      return;
    }
    this.metrics.replaceChildren(
      ...series.map(s => {
        const item = el('div', 'cs-metric');
        const name = `${s.run === '.' ? '' : s.run + '/'}${s.tag}`;
        item.title = `${name}: ${s.steps.length} points`;
        item.append(
          el('span', 'cs-metric-name', name),
          sparkline(s.steps, s.values),
          el('span', 'cs-metric-last', formatValue(s.last))
        );
        return item;
      })
    );
  }

  /** Follow the log stream until the job's `end` event, reconnecting after failures. */
  private startLogs(): void {
    if (this.stream || this.logsEnded || this.isDisposed || !this.isVisible) {
      return;
    }
    const stream = new AbortController();
    this.stream = stream;
    void this.follow(stream);
  }

  private async follow(stream: AbortController): Promise<void> {
    let delay = RECONNECT_MS;
    while (!stream.signal.aborted && !this.logsEnded) {
      try {
        await streamEvents(api.logsEndPoint(this.jobId), {
          signal: stream.signal,
          lastEventId: this.logCursor,
          onEvent: event => this.onLogEvent(event)
        });
        delay = RECONNECT_MS;
      } catch (error) {
        if (error instanceof CellshipAPIError && error.code < 500) {
          // The job is gone or the request refused: retrying cannot help.
          this.appendLines([{ replica: 'cellship', text: `log stream closed by the server: ${error.message}` }]);
          break;
        }
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      }
      if (!stream.signal.aborted && !this.logsEnded) {
        await new Promise(resolve => window.setTimeout(resolve, delay));
      }
    }
    if (this.stream === stream) {
      this.stream = null;
    }
  }

  private onLogEvent(event: IServerEvent): void {
    if (event.event === 'end') {
      this.logsEnded = true;
      this.logs.dataset.ended = 'true';
      this.stream?.abort();
      return;
    }
    if (event.id !== null) {
      this.logCursor = event.id;
    }
    if (event.event === 'message') {
      const data = JSON.parse(event.data) as { lines: ILogLine[] };
      this.appendLines(data.lines);
    }
  }

  private stopLogs(): void {
    this.stream?.abort();
    this.stream = null;
  }

  /** A hidden panel holds no stream open; showing it resumes from the cursor. */
  protected onBeforeHide(msg: Message): void {
    this.stopLogs();
    super.onBeforeHide(msg);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (this.logsStarted) {
      this.startLogs();
    }
  }

  private appendLines(lines: ILogLine[]): void {
    if (!lines.length) {
      return;
    }
    const atBottom = this.logs.scrollTop + this.logs.clientHeight >= this.logs.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      const node = el('div', 'cs-log-line');
      node.append(el('span', 'cs-log-replica', `[${line.replica}] `), document.createTextNode(line.text));
      fragment.appendChild(node);
    }
    this.logs.appendChild(fragment);
    while (this.logs.childElementCount > this.context.maxLogLines) {
      this.logs.firstElementChild!.remove();
    }
    if (atBottom) {
      this.logs.scrollTop = this.logs.scrollHeight;
    }
  }

  private async cancel(): Promise<void> {
    const job = this.job;
    const result = await showDialog({
      title: 'Cancel job?',
      body: `Cancel ${job?.name ?? this.jobId} (${this.jobId}) and stop every process of it?`,
      buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel job' })]
    });
    if (!result.button.accept) {
      return;
    }
    this.cancelButton.disabled = true;
    try {
      this.setJob(await api.cancel(this.jobId));
    } catch (error) {
      void showErrorMessage('Could not cancel the job', String((error as Error).message ?? error));
    }
    this.context.onChanged();
  }

  private async remove(): Promise<void> {
    const result = await showDialog({
      title: 'Delete job?',
      body: `Forget ${this.job?.name ?? this.jobId} (${this.jobId}) and remove its directory (logs, output, TensorBoard files)?`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await api.remove(this.jobId);
      this.context.onBack();
    } catch (error) {
      void showErrorMessage('Could not delete the job', String((error as Error).message ?? error));
    }
    this.context.onChanged();
  }

  private async tensorboard(): Promise<void> {
    // Opened now, inside the click, so no popup blocker stops it; pointed at TensorBoard
    // once the server says where it is.
    const win = window.open('', '_blank');
    try {
      const server = await api.tensorboard(this.jobId);
      const url = /^(https?:\/\/|\/)/.test(server.url) ? server.url : '';
      this.tbLink.href = url;
      this.tbLink.textContent = `TensorBoard: ${url}`;
      this.tbLink.hidden = !url;
      if (win && url) {
        win.location.href = url;
      }
    } catch (error) {
      win?.close();
      void showErrorMessage('Could not start TensorBoard', String((error as Error).message ?? error));
    }
  }

  private async openOutput(): Promise<void> {
    const job = this.job;
    if (!job) {
      return;
    }
    if (job.output_path !== null) {
      await this.context.commands.execute('filebrowser:go-to-path', { path: job.output_path });
      return;
    }
    // The output lies outside the Jupyter root: list it through the API instead.
    const body = el('div', 'cs-files');
    body.appendChild(el('p', '', `The output folder is outside the Jupyter root: ${job.output_dir}`));
    try {
      const listing = await api.files(this.jobId, 'output');
      const list = el('ul');
      for (const entry of listing.entries ?? []) {
        list.appendChild(el('li', '', entry.type === 'directory' ? `${entry.name}/` : `${entry.name} (${entry.size} bytes)`));
      }
      if (!list.childElementCount) {
        list.appendChild(el('li', '', '(empty)'));
      }
      body.appendChild(list);
    } catch (error) {
      body.appendChild(el('p', 'cs-error', String((error as Error).message ?? error)));
    }
    const widget = new Widget({ node: body });
    await showDialog({ title: `Output of ${job.name}`, body: widget, buttons: [Dialog.okButton()] });
  }

  dispose(): void {
    this.stopLogs();
    super.dispose();
  }
}
