/**
 * Beyond this machine's job store: the running `cellship serve` servers (their registry,
 * with a Stop button) and cellship's deployments on Kubernetes (ready/desired replicas,
 * image, URL, an Undeploy button). Both ask before they act (JupyterLab's `showDialog`)
 * and say in one sentence, in the view, why they have nothing to show.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { api, IDeployment, IDeploymentList, IServer } from './api';
import { button, el, formatTime } from './dom';

/** A list view with an empty text and a one-sentence reason when there is nothing. */
export abstract class ListView extends Widget {
  protected readonly tbody = el('tbody');
  protected readonly empty: HTMLDivElement;
  protected readonly reason = el('div', 'cs-reason');

  constructor(kind: string, columns: string[], emptyText: string) {
    super();
    this.addClass('cs-view');
    this.addClass(`cs-${kind}`);
    this.empty = el('div', 'cs-empty', emptyText);
    this.empty.hidden = true;
    this.reason.hidden = true;
    const table = el('table', `cs-table cs-${kind}-table`);
    const head = el('tr');
    for (const title of columns) {
      head.appendChild(el('th', '', title));
    }
    table.append(el('thead'), this.tbody);
    table.tHead!.appendChild(head);
    this.node.append(this.reason, this.empty, table);
  }

  /** What went wrong asking the server, as one sentence in the view (null: all well). */
  setError(message: string | null): void {
    this.reason.textContent = message ?? '';
    this.reason.hidden = message === null;
    if (message !== null) {
      this.empty.hidden = true;
      this.tbody.replaceChildren();
    }
    this.node.dataset.state = message === null ? 'ready' : 'error';
  }
}

export class ServersView extends ListView {
  constructor(private readonly onChanged: () => void) {
    super(
      'servers',
      ['Server', 'Started', ''],
      'No cellship serve running: `cellship serve MODEL` starts one.'
    );
  }

  setServers(servers: IServer[]): void {
    this.setError(null);
    this.empty.hidden = servers.length > 0;
    this.tbody.replaceChildren(
      ...servers.map(server => {
        const tr = el('tr', 'cs-row cs-server-row');
        tr.dataset.pid = String(server.pid);
        tr.title = Object.entries(server.repository)
          .map(([model, dir]) => `${model}: ${dir}`)
          .join('\n');
        const grpc = server.grpc_port === null ? '' : ` (gRPC ${server.grpc_port})`;
        const actions = el('td', 'cs-row-actions');
        actions.appendChild(
          button('Stop', `Stop the server (pid ${server.pid})`, () => void this.stop(server), 'cs-stop jp-mod-warn')
        );
        // One cell with lines, not a column each: the sidebar is narrow.
        const what = el('td', 'cs-name');
        what.append(
          el('span', 'cs-server-models', server.models.join(', ')),
          el('span', 'cs-url cs-line', server.url + grpc),
          el('span', 'cs-line', 'pid '),
        );
        what.lastElementChild!.appendChild(el('span', 'cs-pid', String(server.pid)));
        tr.append(
          what,
          el('td', 'cs-started', formatTime(new Date(server.started * 1000).toISOString())),
          actions
        );
        return tr;
      })
    );
  }

  private async stop(server: IServer): Promise<void> {
    const result = await showDialog({
      title: 'Stop the server?',
      body: `Stop cellship serve ${server.models.join(', ')} at ${server.url} (pid ${server.pid})? It answers what is in flight, then exits.`,
      buttons: [Dialog.cancelButton({ label: 'Keep serving' }), Dialog.warnButton({ label: 'Stop server' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await api.stopServer(server.pid);
    } catch (error) {
      void showErrorMessage('Could not stop the server', String((error as Error).message ?? error));
    }
    this.onChanged();
  }
}

export class DeploymentsView extends ListView {
  constructor(private readonly onChanged: () => void) {
    super(
      'deployments',
      ['Deployment', 'Ready', ''],
      'No cellship deployments in this namespace: `cellship deploy IMAGE --name NAME` makes one.'
    );
  }

  setDeployments(list: IDeploymentList): void {
    if (list.reason) {
      this.setError(list.reason);
      return;
    }
    this.setError(null);
    this.empty.hidden = list.deployments.length > 0;
    this.tbody.replaceChildren(...list.deployments.map(d => this.row(d)));
  }

  private row(d: IDeployment): HTMLTableRowElement {
    const tr = el('tr', 'cs-row cs-deployment-row');
    tr.dataset.name = d.name;
    tr.dataset.namespace = d.namespace;
    tr.title = `${d.kind} ${d.namespace}/${d.name}, model ${d.model_name}` +
      (d.user ? `, by ${d.user}` : '') + `, created ${formatTime(d.created)}`;
    const name = el('td', 'cs-name');
    name.append(
      el('span', 'cs-deployment-name', d.name),
      el('span', 'cs-id', d.namespace),
      el('span', 'cs-image cs-line', d.image),
      el('span', 'cs-url cs-line', d.url)
    );
    const ready = el('td', 'cs-ready', `${d.ready}/${d.desired}`);
    ready.classList.toggle('cs-mod-ready', d.desired > 0 && d.ready >= d.desired);
    ready.dataset.ready = String(d.ready);
    ready.dataset.desired = String(d.desired);
    const actions = el('td', 'cs-row-actions');
    actions.appendChild(
      button('Undeploy', `Undeploy ${d.name} from ${d.namespace}`, () => void this.undeploy(d), 'cs-undeploy jp-mod-warn')
    );
    tr.append(name, ready, actions);
    return tr;
  }

  private async undeploy(d: IDeployment): Promise<void> {
    const result = await showDialog({
      title: 'Undeploy?',
      body: `Delete the ${d.kind} ${d.name} in namespace ${d.namespace} (and its Service)? Its pods stop and ${d.url} stops answering.`,
      buttons: [Dialog.cancelButton({ label: 'Keep it' }), Dialog.warnButton({ label: 'Undeploy' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await api.undeploy(d.name, d.namespace);
    } catch (error) {
      void showErrorMessage('Could not undeploy', String((error as Error).message ?? error));
    }
    this.onChanged();
  }
}
