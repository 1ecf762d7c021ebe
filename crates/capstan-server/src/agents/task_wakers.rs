//! Wake-ups for tasks waiting on their agents: a command of the task sent output or
//! finished (`out:<task>`, `done:<task>` on the agents channel).

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

#[derive(Default)]
pub struct TaskWakers {
    waiting: Mutex<HashMap<i64, watch::Sender<u64>>>,
}

/// A task's subscription; dropping it unsubscribes when it was the last.
pub struct TaskWaker<'a> {
    wakers: &'a TaskWakers,
    task_id: i64,
    pub changes: watch::Receiver<u64>,
}

impl Drop for TaskWaker<'_> {
    fn drop(&mut self) {
        let mut waiting = self.wakers.lock();
        if let Some(sender) = waiting.get(&self.task_id) {
            // This receiver still counts, so 1 means it was the last.
            if sender.receiver_count() <= 1 {
                waiting.remove(&self.task_id);
            }
        }
    }
}

impl TaskWakers {
    pub fn subscribe(&self, task_id: i64) -> TaskWaker<'_> {
        let changes = self
            .lock()
            .entry(task_id)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        TaskWaker {
            wakers: self,
            task_id,
            changes,
        }
    }

    pub fn wake(&self, task_id: i64) {
        if let Some(sender) = self.lock().get(&task_id) {
            sender.send_modify(|n| *n += 1);
        }
    }

    pub fn wake_all(&self) {
        for sender in self.lock().values() {
            sender.send_modify(|n| *n += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<u64>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
