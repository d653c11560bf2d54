/** Batch runs (papermill sweeps): the list, and one batch with a row per run. */
import { showErrorMessage } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { api, IBatch, IBatchSummary } from './api';
import { badge, button, el, formatTime, formatValue, setBadge } from './dom';

/** Where a batch runs: this machine, or pods on Kubernetes (marked, like cluster jobs). */
function where(backend: string): HTMLTableCellElement {
  const cell = el('td', 'cs-where');
  const local = backend === 'local';
  cell.appendChild(el('span', local ? 'cs-where-local' : 'cs-origin cs-where-cluster', local ? 'local' : backend));
  return cell;
}

export class BatchesView extends Widget {
  private readonly tbody = el('tbody');
  private readonly empty = el(
    'div',
    'cs-empty',
    'No batch runs yet: `cellship batch NOTEBOOK`, %batch, or the notebook toolbar\'s batch button.'
  );

  constructor(private readonly onOpen: (id: string) => void) {
    super();
    this.addClass('cs-view');
    this.addClass('cs-batches');
    const table = el('table', 'cs-table cs-batches-table');
    const head = el('tr');
    for (const title of ['Name', 'Status', 'Where', 'Runs', 'Created']) {
      head.appendChild(el('th', '', title));
    }
    table.append(el('thead'), this.tbody);
    table.tHead!.appendChild(head);
    this.node.append(this.empty, table);
  }

  setBatches(batches: IBatchSummary[]): void {
    this.empty.hidden = batches.length > 0;
    this.tbody.replaceChildren(
      ...batches.map(b => {
        const tr = el('tr', 'cs-row cs-batch-row');
        tr.tabIndex = 0;
        tr.dataset.batchId = b.id;
        tr.title = b.notebook;
        const name = el('td', 'cs-name');
        name.append(el('span', 'cs-batch-name', b.name), el('span', 'cs-id', b.id));
        const status = el('td');
        status.appendChild(badge(b.status));
        const counts = Object.entries(b.run_statuses)
          .map(([s, n]) => `${n} ${s}`)
          .join(', ');
        tr.dataset.backend = b.backend;
        tr.append(
          name,
          status,
          where(b.backend),
          el('td', '', `${b.runs} (${counts})`),
          el('td', '', formatTime(b.created))
        );
        tr.addEventListener('click', () => this.onOpen(b.id));
        tr.addEventListener('keydown', event => event.key === 'Enter' && this.onOpen(b.id));
        return tr;
      })
    );
  }
}

export class BatchDetailView extends Widget {
  private readonly titleNode = el('h3', 'cs-detail-title');
  private readonly statusBadge = badge('pending');
  private readonly facts = el('div', 'cs-facts');
  private readonly table = el('table', 'cs-table cs-runs');
  private readonly cancelButton: HTMLButtonElement;
  private batch: IBatch | null = null;

  constructor(
    readonly batchId: string,
    private readonly commands: CommandRegistry,
    onBack: () => void,
    private readonly onChanged: () => void
  ) {
    super();
    this.addClass('cs-view');
    this.addClass('cs-batch-detail');
    const header = el('div', 'cs-detail-header');
    header.append(button('← Batches', 'Back to the batch list', onBack, 'cs-back'), this.titleNode, this.statusBadge);
    this.cancelButton = button('Cancel', 'Cancel the remaining runs', () => void this.cancel(), 'cs-cancel jp-mod-warn');
    const actions = el('div', 'cs-actions');
    actions.append(
      this.cancelButton,
      button('Output folder', 'Open the executed notebooks in the file browser', () => void this.openOutput(), 'cs-output')
    );
    this.titleNode.textContent = batchId;
    this.node.append(header, actions, this.facts, el('h4', '', 'Runs'), this.table);
  }

  setBatch(batch: IBatch): void {
    this.batch = batch;
    this.titleNode.textContent = batch.name;
    setBadge(this.statusBadge, batch.status);
    this.cancelButton.disabled = ['succeeded', 'failed', 'cancelled'].includes(batch.status);
    this.facts.replaceChildren(
      ...[
        ['id', batch.id],
        ['notebook', batch.notebook],
        ['backend', batch.backend],
        ['parallel', String(batch.parallel)],
        ['created', formatTime(batch.created)]
      ].map(([label, value]) => {
        const row = el('div', 'cs-fact');
        row.append(el('span', 'cs-fact-label', label), el('span', 'cs-fact-value', value));
        return row;
      })
    );
    const columns = Array.from(new Set(batch.rows.flatMap(row => Object.keys(row)))).filter(
      c => c !== 'output'
    );
    const head = el('tr');
    columns.forEach(c => head.appendChild(el('th', '', c)));
    const thead = el('thead');
    thead.appendChild(head);
    const tbody = el('tbody');
    for (const row of batch.rows) {
      const tr = el('tr');
      for (const column of columns) {
        const cell = el('td');
        if (column === 'status') {
          cell.appendChild(badge(String(row[column])));
        } else {
          cell.textContent = formatValue(row[column]);
        }
        tr.appendChild(cell);
      }
      tbody.appendChild(tr);
    }
    this.table.replaceChildren(thead, tbody);
  }

  private async cancel(): Promise<void> {
    this.cancelButton.disabled = true;
    try {
      this.setBatch(await api.cancelBatch(this.batchId));
    } catch (error) {
      void showErrorMessage('Could not cancel the batch', String((error as Error).message ?? error));
    }
    this.onChanged();
  }

  private async openOutput(): Promise<void> {
    if (!this.batch) {
      return;
    }
    if (this.batch.output_path === null) {
      void showErrorMessage(
        'Outside the Jupyter root',
        `The executed notebooks are in ${this.batch.rows.length ? formatValue(this.batch.rows[0].output) : ''}, outside the folder Jupyter serves.`
      );
      return;
    }
    await this.commands.execute('filebrowser:go-to-path', { path: this.batch.output_path });
  }
}
