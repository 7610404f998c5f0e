/**
 * The editor side that every mesh-llm node of the flow shares: its two properties (a name and
 * the mesh config node), its edit dialog (those two rows) and its palette entry. Each node's
 * .html loads this file (Node-RED serves the package's resources/ folder) and registers its
 * type with what is its own: colour, icon, label, inputs, outputs and their labels.
 */
(function () {
  if (window.meshLlmStepNode) return;

  var dialog =
    '<div class="form-row"><label for="node-input-mesh"><i class="fa fa-sitemap"></i> Mesh</label>' +
    '<input type="text" id="node-input-mesh"></div>' +
    '<div class="form-row"><label for="node-input-name"><i class="fa fa-tag"></i> Name</label>' +
    '<input type="text" id="node-input-name" placeholder="Name"></div>';

  /** o: {color, icon, label, outputLabels, inputs (default 1), outputs (default 1)} */
  window.meshLlmStepNode = function (type, o) {
    $('<script type="text/html">').attr('data-template-name', type).html(dialog).appendTo('body');
    RED.nodes.registerType(type, {
      category: 'mesh-llm',
      color: o.color,
      defaults: {
        name: { value: '' },
        mesh: { value: '', type: 'mesh-llm-config' }
      },
      inputs: o.inputs === undefined ? 1 : o.inputs,
      outputs: o.outputs === undefined ? 1 : o.outputs,
      icon: o.icon,
      label: function () { return this.name || o.label; },
      outputLabels: o.outputLabels,
      paletteLabel: o.label
    });
  };
})();
