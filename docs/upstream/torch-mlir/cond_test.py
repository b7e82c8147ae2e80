# Part of the LLVM Project, under the Apache License v2.0 with LLVM Exceptions.
# See https://llvm.org/LICENSE.txt for license information.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
# Also available under a BSD-style license. See LICENSE.

# RUN: %PYTHON %s | FileCheck %s
# For test/python/fx_importer/cond_test.py, beside basic_test.py.

import torch
import torch.nn as nn
from torch_mlir import fx


def run(f):
    print(f"{f.__name__}")
    print("-" * len(f.__name__))
    f()
    print()


@run
# CHECK-LABEL: test_cond_one_result
# CHECK: func.func private @true_graph_0(%{{.*}}: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32>
# CHECK: func.func private @false_graph_0(%{{.*}}: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32>
# CHECK: func.func @test_cond_one_result(%[[X:.*]]: !torch.vtensor<[2,3],f32>, %[[FLAG:.*]]: !torch.vtensor<[1],f32>)
# CHECK: %[[PRED:.*]] = torch.aten.Bool.Tensor %{{.*}} : !torch.vtensor<[],i1> -> !torch.bool
# CHECK: %[[R:.*]] = torch.prim.If %[[PRED]] -> (!torch.vtensor<[2,3],f32>)
# CHECK: %[[T:.*]] = func.call @true_graph_0(%[[X]])
# CHECK: torch.prim.If.yield %[[T]]
# CHECK: } else {
# CHECK: %[[F:.*]] = func.call @false_graph_0(%[[X]])
# CHECK: torch.prim.If.yield %[[F]]
# CHECK: return %[[R]]
def test_cond_one_result():
    class Basic(nn.Module):
        def forward(self, x, flag):
            return torch.cond(flag.sum() > 0, lambda t: t.sin(), lambda t: t.cos(), (x,))

    m = fx.export_and_import(Basic(), torch.randn(2, 3), torch.ones(1), func_name="test_cond_one_result")
    print(m)


@run
# CHECK-LABEL: test_cond_two_results_and_parameters
# CHECK: %[[PRED:.*]] = torch.aten.Bool.Tensor
# CHECK: %[[R:.*]]:2 = torch.prim.If %[[PRED]] -> (!torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,4],f32>)
# CHECK: %[[T:.*]]:2 = func.call @true_graph_0(
# CHECK: torch.prim.If.yield %[[T]]#0, %[[T]]#1
# CHECK: } else {
# CHECK: %[[F:.*]]:2 = func.call @false_graph_0(
# CHECK: torch.prim.If.yield %[[F]]#0, %[[F]]#1
# CHECK: torch.aten.add.Tensor %[[R]]#0, %[[R]]#1
def test_cond_two_results_and_parameters():
    class WithConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x, flag):
            a, b = torch.cond(
                flag[0] != 0,
                lambda t: (self.conv(t).relu(), t * 2),
                lambda t: (t.clone(), t - 1),
                (x,),
            )
            return a + b

    m = fx.export_and_import(
        WithConv().eval(),
        torch.randn(1, 2, 4, 4),
        torch.ones(1, dtype=torch.int64),
        func_name="test_cond_two_results_and_parameters",
    )
    print(m)
