"""Import ``torch.cond`` with torch-mlir's FX importer (Korol et al., Sec. II-A.2: "we extended torch-mlir to
support lowering input-dependent gates as blocks controlled by ``if`` statements").

torch-mlir's :class:`~torch_mlir.extras.fx_importer.FxImporter` dispatches each higher-order operator to a
``_import_hop_<name>`` method of its node importer and has none for ``cond`` (llvm/torch-mlir#4028): it
raises ``NotImplementedError: Higher-order operation 'cond' not implemented``. :class:`CondNodeImporter`
adds that one method, in a subclass passed as ``FxImporter(graph_node_importer_cls=...)``, so the package
itself is not patched. It reuses what the importer already does for ``while_loop``: the branch graphs are
child graph modules that ``import_program`` has imported as private functions before the main graph, and
each branch region calls its function::

    %c = torch.aten.Bool.Tensor %pred : !torch.vtensor<[],i1> -> !torch.bool
    %r:n = torch.prim.If %c -> (...) {
      %t:n = func.call @true_graph_0(%operands...)   torch.prim.If.yield %t#0, ...
    } else {
      %f:n = func.call @false_graph_0(%operands...)  torch.prim.If.yield %f#0, ...
    }

``torch.prim.If`` is what torch-mlir's own TorchScript path emits for ``if``, and its lowering to
``scf.if`` (``convert-torch-to-scf``) is the same one the ONNX path reaches through ``onnx.If``; IREE
inlines the calls. ``docs/upstream/`` holds this handler as a patch against torch-mlir.
"""

from __future__ import annotations

from typing import Any

try:
    from torch_mlir.extras.fx_importer import (
        Block,
        FlatSymbolRefAttr,
        GraphNodeImporter,
        InsertionPoint,
        Location,
        Operation,
    )
except ImportError as e:  # optional: only the torch-mlir front end needs it
    raise ImportError("the torch-mlir front end needs the torch-mlir package: "
                      "pip install --no-deps torch-mlir==20261001") from e


class CondNodeImporter(GraphNodeImporter):
    """torch-mlir's node importer, plus ``torch.ops.higher_order.cond`` as ``torch.prim.If``."""

    def _import_hop_cond(self, loc: Location, node: Any, hop: Any) -> None:
        pred, true_fn, false_fn, operands = node.args
        if node.kwargs:
            raise NotImplementedError(f"cond with keyword arguments {sorted(node.kwargs)}")
        root = node.graph.owning_module
        callees = []
        for fn in (true_fn, false_fn):
            if fn.op != "get_attr":
                raise NotImplementedError(f"cond branch {fn} is not a child graph module (get_attr)")
            callees.append(self.fx_importer._graph_module_to_func_name[id(getattr(root, fn.target))])
        values = [self._import_argument(loc, a) for a in operands]
        results = node.meta["val"]
        result_types = [self._cc.value_info_to_type(v) for v in results]
        predicate = Operation.create("torch.aten.Bool.Tensor", results=[self._cc.torch_bool_type],
                                     operands=[self._import_argument(loc, pred)], loc=loc)
        if_op = Operation.create("torch.prim.If", results=result_types, operands=[predicate.result], regions=2,
                                 loc=loc)
        for region, callee in zip(if_op.regions, callees, strict=True):
            with loc:
                block = Block.create_at_start(region, [])
            with InsertionPoint(block):
                call = Operation.create("func.call", attributes={"callee": FlatSymbolRefAttr.get(callee)},
                                        results=result_types, operands=values, loc=loc)
                Operation.create("torch.prim.If.yield", results=[], operands=list(call.results), loc=loc)
        # cond always returns a tuple: its users are getitem nodes, which read the results by index.
        self._multi_result_nodes.add(node)
        for i, value in enumerate(if_op.results):
            self.bind_node_value(node, value, i)


__all__ = ["CondNodeImporter"]
