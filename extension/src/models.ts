/** Exported models (the model repository `cellship export` writes), every version. */
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { IModelVersion } from './api';
import { el, formatTime, formatValue } from './dom';

export class ModelsView extends Widget {
  private readonly tbody = el('tbody');
  private readonly empty = el(
    'div',
    'cs-empty',
    'No models yet: `cellship export NOTEBOOK --name MODEL` stores one, `cellship serve MODEL` serves it.'
  );

  constructor(private readonly commands: CommandRegistry) {
    super();
    this.addClass('cs-view');
    this.addClass('cs-models');
    const table = el('table', 'cs-table cs-models-table');
    const head = el('tr');
    for (const title of ['Model', 'Source', 'Created', 'Signature']) {
      head.appendChild(el('th', '', title));
    }
    table.append(el('thead'), this.tbody);
    table.tHead!.appendChild(head);
    this.node.append(this.empty, table);
  }

  setModels(models: IModelVersion[]): void {
    this.empty.hidden = models.length > 0;
    this.tbody.replaceChildren(
      ...models.map(m => {
        const tr = el('tr', 'cs-row cs-model-row');
        tr.dataset.model = `${m.name}/${m.version}`;
        const metrics = Object.entries(m.metrics)
          .map(([k, v]) => `${k}=${formatValue(v)}`)
          .join(', ');
        tr.title = `${m.path}${metrics ? '\n' + metrics : ''}`;
        const name = el('td', 'cs-name');
        name.append(el('span', 'cs-model-name', m.name), el('span', 'cs-id', `version ${m.version}`));
        tr.append(
          name,
          el('td', '', m.source),
          el('td', '', formatTime(m.created)),
          el('td', 'cs-signature', m.signature)
        );
        if (m.file_path !== null) {
          tr.tabIndex = 0;
          const open = () =>
            void this.commands.execute('filebrowser:go-to-path', { path: m.file_path });
          tr.addEventListener('click', open);
          tr.addEventListener('keydown', event => event.key === 'Enter' && open());
        }
        return tr;
      })
    );
  }
}
