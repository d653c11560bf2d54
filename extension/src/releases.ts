/**
 * The Releases tab: `cellship releases` for every model, newest first (version, outcome
 * and the step that stopped it, when and who, notebook and parameters, gates, image or
 * digest, the canary's figures), and a "Release…" button that starts `cellship release`
 * on the server (a detached process; its record appears here as it runs). Every string
 * of a record goes in as text.
 */
import { Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { api, INewRelease, IRelease } from './api';
import { badge, button, el, formatTime, formatValue } from './dom';
import { ListView } from './serving';

function version(r: IRelease): string {
  if (r.kind === 'rollback') {
    return `rollback ${r.previous ?? '-'} → ${r.version ?? '-'}`;
  }
  return r.version === null ? 'no version' : `version ${r.version}`;
}

function gateText(r: IRelease): string {
  return r.gates
    .map(g => {
      const value =
        typeof g.value === 'number' && isFinite(g.value) ? String(Number(g.value.toPrecision(4))) : '-';
      return `${g.gate} [${value}${g.passed === false ? ' FAIL' : ''}]`;
    })
    .join('; ');
}

/** The image or digest and the canary's figures, as far as the record has them. */
function where(r: IRelease): string {
  const parts: string[] = [];
  for (const key of ['image', 'digest', 'namespace', 'repository']) {
    const value = r.details[key];
    if (typeof value === 'string' && value) {
      parts.push(`${key} ${value}`);
    }
  }
  const canary = r.details['canary'];
  if (canary && typeof canary === 'object') {
    parts.push(
      'canary ' +
        Object.entries(canary as Record<string, unknown>)
          .map(([k, v]) => `${k}=${formatValue(v)}`)
          .join(', ')
    );
  }
  return parts.join('\n');
}

export class ReleasesView extends ListView {
  /** The notebook a new release starts from (the current notebook), if any. */
  currentNotebook: () => string | null = () => null;

  constructor(private readonly onChanged: () => void) {
    super(
      'releases',
      ['Release', 'Outcome', 'Notebook', 'Gates'],
      'No releases yet: Release… (or `cellship release NOTEBOOK --model MODEL`) starts one.'
    );
    const bar = el('div', 'cs-view-toolbar');
    bar.appendChild(
      button('Release…', 'Release a notebook as the next version of a model', () => void this.release(), 'cs-release-button')
    );
    this.node.prepend(bar);
  }

  setReleases(releases: IRelease[]): void {
    this.setError(null);
    this.empty.hidden = releases.length > 0;
    this.tbody.replaceChildren(...releases.map(r => this.row(r)));
  }

  private row(r: IRelease): HTMLTableRowElement {
    const tr = el('tr', 'cs-row cs-release-row');
    tr.dataset.id = r.id;
    tr.dataset.model = r.model;
    tr.dataset.outcome = r.outcome;
    tr.title = [r.reason, where(r)].filter(Boolean).join('\n');
    const name = el('td', 'cs-name');
    name.append(
      el('span', 'cs-release-model', r.model),
      el('span', 'cs-id', r.id),
      el('span', 'cs-line cs-release-version', `${version(r)} (${r.target})`),
      el('span', 'cs-line cs-release-when', `${formatTime(r.started)} by ${r.user}`)
    );
    const outcome = el('td', 'cs-release-outcome');
    outcome.appendChild(badge(r.kind === 'rollback' ? 'rollback' : r.outcome));
    if (r.failed_step) {
      outcome.appendChild(el('span', 'cs-line cs-release-step', `at ${r.failed_step}`));
    }
    const details = where(r);
    if (details) {
      outcome.appendChild(el('span', 'cs-line cs-release-where', details));
    }
    const notebook = el('td', 'cs-release-notebook');
    const path = r.notebook_path ?? r.notebook ?? '-';
    notebook.appendChild(el('span', 'cs-release-notebook-path', path));
    const params = Object.entries(r.parameters)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(', ');
    if (params) {
      notebook.appendChild(el('span', 'cs-line cs-release-parameters', params));
    }
    tr.append(name, outcome, notebook, el('td', 'cs-release-gates', gateText(r) || '-'));
    return tr;
  }

  /** Ask for what to release, start it, and let the panel's refresh show its record. */
  async release(): Promise<void> {
    const form = new ReleaseForm(this.currentNotebook() ?? '');
    const result = await showDialog({
      title: 'Release a notebook',
      body: form,
      focusNodeSelector: form.focusSelector,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Release' })]
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    try {
      const started = await api.startRelease(result.value);
      Notification.success(`cellship: release of ${started.model} started (pid ${started.pid})`, {
        autoClose: 4000
      });
    } catch (error) {
      void showErrorMessage('The release did not start', String((error as Error).message ?? error));
    }
    this.onChanged();
  }
}

/** The dialog's form: notebook, model, target (with the Kubernetes fields), gates one
 * per line. */
class ReleaseForm extends Widget implements Dialog.IBodyWidget<INewRelease> {
  readonly focusSelector: string;
  private readonly notebook = el('input', 'jp-mod-styled cs-release-notebook-input');
  private readonly model = el('input', 'jp-mod-styled cs-release-model-input');
  private readonly target = el('select', 'jp-mod-styled cs-release-target');
  private readonly gates = el('textarea', 'jp-mod-styled cs-release-gates-input');
  private readonly registry = el('input', 'jp-mod-styled cs-release-registry');
  private readonly base = el('input', 'jp-mod-styled cs-release-base');
  private readonly namespace = el('input', 'jp-mod-styled cs-release-namespace');

  constructor(notebook: string) {
    super();
    this.addClass('cs-release-form');
    this.notebook.value = notebook;
    this.notebook.placeholder = 'path/to/notebook.ipynb';
    this.model.placeholder = 'digits-cnn';
    for (const option of ['local', 'kubernetes']) {
      this.target.appendChild(el('option', '', option)).value = option;
    }
    this.gates.rows = 3;
    this.gates.placeholder = 'record:accuracy > 0.9\nmetric:validation/epoch_accuracy >= 0.95';
    this.registry.placeholder = 'registry:5000/team';
    this.base.placeholder = 'python:3.11-slim';
    this.namespace.placeholder = "default: the context's";
    const cluster = el('fieldset', 'cs-release-kubernetes');
    cluster.append(
      el('legend', '', 'Kubernetes'),
      this.field('Registry', this.registry),
      this.field('Base image', this.base),
      this.field('Namespace', this.namespace)
    );
    cluster.hidden = true;
    this.target.addEventListener('change', () => {
      cluster.hidden = this.target.value !== 'kubernetes';
    });
    this.node.append(
      this.field('Notebook (relative to the Jupyter root)', this.notebook),
      this.field('Model', this.model),
      this.field('Release to', this.target),
      this.field('Gates, one per line', this.gates),
      cluster
    );
    this.focusSelector = notebook ? '.cs-release-model-input' : '.cs-release-notebook-input';
  }

  private field(label: string, input: HTMLElement): HTMLLabelElement {
    const node = el('label', 'cs-field', label);
    node.appendChild(input);
    return node;
  }

  getValue(): INewRelease {
    const value: INewRelease = {
      notebook: this.notebook.value.trim(),
      model: this.model.value.trim(),
      to: this.target.value === 'kubernetes' ? 'kubernetes' : 'local',
      gates: this.gates.value
        .split('\n')
        .map(line => line.trim())
        .filter(line => line.length > 0)
    };
    if (value.to === 'kubernetes') {
      for (const key of ['registry', 'base', 'namespace'] as const) {
        const text = this[key].value.trim();
        if (text) {
          value[key] = text;
        }
      }
    }
    return value;
  }
}
