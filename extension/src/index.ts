/**
 * cellship's JupyterLab extension: the "cellship" left-sidebar panel, its commands in
 * the palette, its settings, a notebook toolbar button that runs the notebook as a batch
 * run (declared in the settings schema, so users can move or hide it), and the
 * `ICellshipJobs` token other extensions can require.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IToolbarWidgetRegistry,
  Notification,
  ToolbarButton
} from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

import { api } from './api';
import { CellshipPanel, DEFAULT_SETTINGS, IPanelSettings } from './panel';
import { ICellshipJobs } from './tokens';

export { ICellshipJobs, IJobChange } from './tokens';
export type { IJobSummary, Status } from './api';

const PLUGIN_ID = 'cellship:plugin';

namespace CommandIDs {
  export const open = 'cellship:open';
  export const refresh = 'cellship:refresh';
  export const runBatch = 'cellship:run-notebook-as-batch';
  export const release = 'cellship:release';
}

export const cellshipIcon = new LabIcon({
  name: 'cellship:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<path d="M11 2h2v3h5l-1.5 6H7.5L6 5h5z"/>' +
    '<path d="M2 13h20l-2.6 6.2A3 3 0 0 1 16.6 21H7.4a3 3 0 0 1-2.8-1.8z"/>' +
    '</g></svg>'
});

function readSettings(settings: ISettingRegistry.ISettings | null): IPanelSettings {
  if (!settings) {
    return { ...DEFAULT_SETTINGS };
  }
  const composite = settings.composite as Partial<IPanelSettings>;
  return {
    refreshInterval: Math.max(0.5, Number(composite.refreshInterval ?? DEFAULT_SETTINGS.refreshInterval)),
    defaultBackend: String(composite.defaultBackend ?? DEFAULT_SETTINGS.defaultBackend),
    maxLogLines: Math.max(100, Number(composite.maxLogLines ?? DEFAULT_SETTINGS.maxLogLines)),
    pageSize: Math.min(1000, Math.max(10, Number(composite.pageSize ?? DEFAULT_SETTINGS.pageSize)))
  };
}

/** The toolbar item's name in `jupyter.lab.toolbars` (schema/plugin.json). */
const BATCH_TOOLBAR_ITEM = 'cellshipBatch';

/** The notebook toolbar button: the command does the work, so the palette can too. */
function batchButton(app: JupyterFrontEnd, panel: NotebookPanel): ToolbarButton {
  return new ToolbarButton({
    className: 'cs-batch-button',
    icon: cellshipIcon,
    label: 'Batch',
    tooltip: 'Run this notebook as a cellship batch run (saved first)',
    onClick: () => void app.commands.execute(CommandIDs.runBatch, { path: panel.context.path })
  });
}

/** Without a toolbar registry (a JupyterLab-based app without one) the button is put in
 * place directly, as extensions did before `jupyter.lab.toolbars`. */
class BatchButtonExtension implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  constructor(private readonly app: JupyterFrontEnd) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = batchButton(this.app, panel);
    panel.toolbar.insertItem(10, BATCH_TOOLBAR_ITEM, button);
    return new DisposableDelegate(() => button.dispose());
  }
}

const plugin: JupyterFrontEndPlugin<ICellshipJobs> = {
  id: PLUGIN_ID,
  description: 'cellship: jobs, batch runs and models in a sidebar panel.',
  autoStart: true,
  requires: [],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer, INotebookTracker, IToolbarWidgetRegistry],
  provides: ICellshipJobs,
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    toolbarRegistry: IToolbarWidgetRegistry | null
  ): ICellshipJobs => {
    const panel = new CellshipPanel(app.commands);
    panel.title.icon = cellshipIcon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'cellship-panel');

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open cellship panel',
      caption: 'Show jobs and batch runs',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh cellship jobs',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIDs.runBatch, {
      label: 'Run notebook as cellship batch run',
      caption: 'Save the notebook, then run it with papermill as a cellship batch run',
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async args => {
        const current = notebooks?.currentWidget;
        const path = (args.path as string | undefined) ?? current?.context.path;
        if (!path) {
          return;
        }
        const open = notebooks?.find(nb => nb.context.path === path);
        if (open && open.context.model.dirty) {
          await open.context.save();
        }
        try {
          const batch = await api.startBatch(path, panel.settings.defaultBackend);
          Notification.success(`cellship: batch ${batch.name} (${batch.id}) started`, { autoClose: 4000 });
          app.shell.activateById(panel.id);
          panel.showBatch(batch.id);
        } catch (error) {
          Notification.error(`cellship: ${(error as Error).message ?? String(error)}`);
        }
      }
    });
    panel.releasesView.currentNotebook = () => notebooks?.currentWidget?.context.path ?? null;
    app.commands.addCommand(CommandIDs.release, {
      label: 'Release a notebook with cellship…',
      caption: 'Run a notebook, gate it, canary and promote its model as the next served version',
      isEnabled: () => panel.capabilities.includes('releases'),
      execute: async () => {
        app.shell.activateById(panel.id);
        panel.showTab('releases');
        await panel.releasesView.release();
      }
    });
    for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.runBatch, CommandIDs.release]) {
      palette?.addItem({ command, category: 'cellship' });
    }
    if (toolbarRegistry) {
      // Placed, moved or hidden by the notebook toolbar's settings, which merge the
      // `jupyter.lab.toolbars` entry of this plugin's schema.
      toolbarRegistry.addFactory<NotebookPanel>('Notebook', BATCH_TOOLBAR_ITEM, nb => batchButton(app, nb));
    } else {
      app.docRegistry.addWidgetExtension('Notebook', new BatchButtonExtension(app));
    }

    // Activation returns at once (other plugins wait for the token); settings and the
    // server check follow.
    void (async () => {
      if (settingRegistry) {
        try {
          const settings = await settingRegistry.load(PLUGIN_ID);
          panel.setSettings(readSettings(settings));
          settings.changed.connect(() => panel.setSettings(readSettings(settings)));
        } catch (error) {
          console.warn('cellship: settings could not be loaded; using defaults', error);
        }
      }
      await panel.start();
    })();
    return panel.jobs;
  }
};

export default plugin;
