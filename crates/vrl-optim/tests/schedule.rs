//! vrl's `Step` and `OneCycle` schedules against torch's `StepLR` and `OneCycleLR`, step for step.
//!
//! The fixture `tests/fixtures/schedule_reference.json` is written by `python/schedule_reference.py`
//! (its docstring describes the cases).

use serde::Deserialize;
use vrl_optim::Schedule;

const FIXTURE: &str = include_str!("fixtures/schedule_reference.json");

#[derive(Debug, Deserialize)]
struct Case {
    schedule: Schedule,
    lr: f64,
    total: u64,
    lrs: Vec<f64>,
}

#[test]
fn step_and_one_cycle_match_torch() {
    let cases: Vec<Case> = serde_json::from_str(FIXTURE).unwrap();
    let mut kinds = (0, 0);
    for case in &cases {
        assert_eq!(case.lrs.len() as u64, case.total);
        match case.schedule {
            Schedule::Step { .. } => kinds.0 += 1,
            Schedule::OneCycle { .. } => kinds.1 += 1,
            _ => {}
        }
        for (step, &want) in case.lrs.iter().enumerate() {
            let got = case.schedule.lr(case.lr, step as u64, case.total);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1e-12),
                "{:?} step {step}: {got} vs torch {want}",
                case.schedule
            );
        }
    }
    assert!(kinds.0 >= 2 && kinds.1 >= 3, "{kinds:?}");
}
